# RetinaNet + FPN, ReXNet-1.0x backbone, 1x schedule on COCO 2017 (16 images per batch).
# Diff against mmdet's RetinaNet R50 config: backbone, FPN input channels, optimizer.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['rexnet_backbones'], allow_failed_imports=False)

# COCO root: data/coco/ by default; override with the COCO_ROOT environment variable.
data_root = '{{$COCO_ROOT:data/coco/}}'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

model = dict(
    backbone=dict(
        _delete_=True,
        type='ReXNet',
        arch='rexnet_100',
        out_indices=(1, 2, 3, 4),  # strides 4, 8, 16, 32
        frozen_stages=2,  # stem and everything up to stride 4, as ResNet/RegNet freeze C2
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='timm/rexnet_100.nav_in1k')),
    neck=dict(in_channels=[38, 61, 128, 185]))

# lr 0.01 for 16 images as mmdet's RetinaNet R18/R50; weight decay 5e-5 as mmdet's RegNet
# (light backbones with BN and depthwise convs), see README "Hyper-parameters".
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-5))
auto_scale_lr = dict(enable=False, base_batch_size=16)
