# Semantic FPN with six backbones, from scratch on the synthetic segmentation set, 3 seeds each:
#   python tools/suite.py run suites/seg_synthetic.py --threads 1
#   (or two shards into one work dir: --jobs 1/2 and --jobs 2/2, one process each)
#   python tools/suite.py report suites/seg_synthetic.py
# Every model: the segmentor, data, schedule, optimizer and init of seg/fpn_rexnet_synthetic.py (common
# below); only the backbone and the FPN's in_channels differ. mmseg has no RegNet: the real mmdet class
# is used through its scope prefix (mmdet.RegNet), as is mmdet's MobileNetV2 (the one of the detection
# suite; mmseg's is a dilated variant), and mmseg's own ResNet. Format: rexnet_backbones/suite/__init__.py.
name = 'seg_synthetic'
task = 'seg'
seeds = [0, 1, 2]
primary_metric = 'mIoU'
metrics = ['mIoU', 'mAcc', 'aAcc']
reference = 'regnetx_400mf'
input_size = (128, 128)

_root = 'data/suites/seg_synthetic'
_size = (128, 128)
_iters = 200
data = dict(root=_root, num_train=128, num_val=64, img_size=_size, seed=0)

_base = 'seg/fpn_rexnet_synthetic.py'
_bn = dict(type='BN', requires_grad=True)
models = dict(
    rexnet_100=dict(config=_base, label='ReXNet-1.0'),
    rexnet_lite_100=dict(config=_base, label='ReXNet-lite-1.0', backbone=dict(arch='rexnet_lite_100'),
                         neck_in_channels=[40, 64, 128, 184]),
    regnetx_400mf=dict(config=_base, label='RegNetX-400MF',
                       backbone=dict(_delete_=True, type='mmdet.RegNet', arch='regnetx_400mf',
                                     out_indices=(0, 1, 2, 3), norm_cfg=_bn),
                       neck_in_channels=[32, 64, 160, 384]),
    regnetx_800mf=dict(config=_base, label='RegNetX-800MF',
                       backbone=dict(_delete_=True, type='mmdet.RegNet', arch='regnetx_800mf',
                                     out_indices=(0, 1, 2, 3), norm_cfg=_bn),
                       neck_in_channels=[64, 128, 288, 672]),
    resnet18=dict(config=_base, label='ResNet-18',
                  backbone=dict(_delete_=True, type='ResNet', depth=18, num_stages=4, out_indices=(0, 1, 2, 3),
                                norm_cfg=_bn, style='pytorch'),
                  neck_in_channels=[64, 128, 256, 512]),
    mobilenetv2=dict(config=_base, label='MobileNetV2',
                     backbone=dict(_delete_=True, type='mmdet.MobileNetV2', out_indices=(1, 2, 4, 6), norm_cfg=_bn),
                     neck_in_channels=[24, 32, 96, 320]),
)

common = {
    'custom_imports': dict(imports=['rexnet_backbones', 'mmdet.models'], allow_failed_imports=False),
    'data_root': _root, 'img_scale': _size, 'max_iters': _iters,
    # from scratch: no ImageNet weights, every stage trains, BN statistics included
    'model.backbone.init_cfg': None,
    'model.backbone.frozen_stages': -1,
    'model.backbone.norm_eval': False,
    'train_dataloader.dataset.data_root': _root,
    'test_dataloader.dataset.data_root': _root,
    'train_cfg': dict(max_iters=_iters, val_interval=_iters),
    'param_scheduler': [
        dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
        dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=_iters, T_max=_iters, eta_min=1e-5)],
    'default_hooks.checkpoint': dict(by_epoch=False, interval=40, max_keep_ckpts=1),
}
