# RetinaNet with six backbones, from scratch on the synthetic detection set, 3 seeds each:
#   python tools/suite.py run suites/det_synthetic.py --threads 1            (one process)
#   python tools/suite.py run suites/det_synthetic.py --jobs 1/2 --threads 1 &  (two shards,
#   python tools/suite.py run suites/det_synthetic.py --jobs 2/2 --threads 1    one work dir)
#   python tools/suite.py report suites/det_synthetic.py
# Every model: the detector, data, schedule, optimizer and init of det/retinanet_rexnet_synthetic.py
# at 128 px (common below); only the backbone (real mmdet RegNet/ResNet/MobileNetV2) and the FPN's
# in_channels differ. Format: rexnet_backbones/suite/__init__.py.
name = 'det_synthetic'
task = 'det'
seeds = [0, 1, 2]
primary_metric = 'coco/bbox_mAP'
metrics = ['coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75']
reference = 'regnetx_400mf'
input_size = (128, 128)

_root = 'data/suites/det_synthetic/'
_size = (128, 128)
_epochs = 12
data = dict(root=_root, num_train=128, num_val=64, img_size=_size, seed=0)

_base = 'det/retinanet_rexnet_synthetic.py'
models = dict(
    rexnet_100=dict(config=_base, label='ReXNet-1.0'),
    rexnet_lite_100=dict(config=_base, label='ReXNet-lite-1.0', backbone=dict(arch='rexnet_lite_100'),
                         neck_in_channels=[40, 64, 128, 184]),
    regnetx_400mf=dict(config=_base, label='RegNetX-400MF',
                       backbone=dict(_delete_=True, type='RegNet', arch='regnetx_400mf', out_indices=(0, 1, 2, 3)),
                       neck_in_channels=[32, 64, 160, 384]),
    regnetx_800mf=dict(config=_base, label='RegNetX-800MF',
                       backbone=dict(_delete_=True, type='RegNet', arch='regnetx_800mf', out_indices=(0, 1, 2, 3)),
                       neck_in_channels=[64, 128, 288, 672]),
    resnet18=dict(config=_base, label='ResNet-18',
                  backbone=dict(_delete_=True, type='ResNet', depth=18, num_stages=4, out_indices=(0, 1, 2, 3),
                                norm_cfg=dict(type='BN', requires_grad=True), style='pytorch'),
                  neck_in_channels=[64, 128, 256, 512]),
    # strides 4, 8, 16, 32: layers 1, 2, 4 and 6 (320 channels; 7 would be the 1280-channel conv)
    mobilenetv2=dict(config=_base, label='MobileNetV2',
                     backbone=dict(_delete_=True, type='MobileNetV2', out_indices=(1, 2, 4, 6)),
                     neck_in_channels=[24, 32, 96, 320]),
)

_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
common = {
    # the config's own variables, so that the recorded recipe shows the values in use
    'data_root': _root, 'img_scale': _size, 'max_epochs': _epochs,
    # from scratch: no ImageNet weights, every stage trains, BN statistics included
    'model.backbone.init_cfg': None,
    'model.backbone.frozen_stages': -1,
    'model.backbone.norm_eval': False,
    'model.neck.out_channels': 48,
    'model.bbox_head': dict(in_channels=48, feat_channels=48, stacked_convs=2),
    'train_dataloader': dict(batch_size=8, num_workers=0, persistent_workers=False,
                             dataset=dict(data_root=_root, pipeline=_train_pipeline)),
    'test_dataloader': dict(batch_size=8, num_workers=0, persistent_workers=False,
                            dataset=dict(data_root=_root, pipeline=_test_pipeline)),
    'test_evaluator.ann_file': _root + 'annotations/instances_val2017.json',
    'train_cfg': dict(max_epochs=_epochs, val_interval=_epochs),
    'param_scheduler': [
        dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
        dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=_epochs, T_max=_epochs, eta_min=1e-5)],
    'default_hooks.checkpoint': dict(interval=2, max_keep_ckpts=1),
    'default_hooks.logger.interval': 20,
}
