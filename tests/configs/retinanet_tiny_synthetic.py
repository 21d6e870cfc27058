# Tiny RetinaNet on the synthetic COCO-layout shapes set, small enough for CPU tests.
# Data: `python tools/make_synthetic_data.py` (or the tests' fixtures) writes
# <SYNTHETIC_DATA_ROOT>/coco; SYNTHETIC_DATA_ROOT defaults to data/synthetic.
_base_ = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'
custom_imports = dict(imports=['rexnet_backbones'], allow_failed_imports=False)

# ---------------------------------------------------------------------------------------------
# Backbone: ReXNet (the block to edit to test another backbone). `_delete_=True` drops the base
# ResNet keys; `backbone_channels` are the channels of the 4 feature maps fed to the FPN.
# ---------------------------------------------------------------------------------------------
backbone = dict(
    _delete_=True,
    type='ReXNet',
    arch='rexnet_100',
    out_indices=(1, 2, 3, 4),
    norm_eval=True,
    init_cfg=None)  # no download
backbone_channels = [38, 61, 128, 185]
# ---------------------------------------------------------------------------------------------

classes = ('rectangle', 'ellipse', 'triangle')
metainfo = dict(classes=classes)
data_root = '{{$SYNTHETIC_DATA_ROOT:data/synthetic}}/coco/'
img_scale = (128, 128)

model = dict(
    backbone=backbone,
    neck=dict(in_channels=backbone_channels, out_channels=32),
    bbox_head=dict(num_classes=len(classes), in_channels=32, feat_channels=32, stacked_convs=1),
    # keep low-confidence boxes so that a barely trained model still yields COCO metrics
    test_cfg=dict(score_thr=0.0, nms_pre=200, max_per_img=20))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

# one short epoch (num_train / batch_size iterations), validation at its end
train_cfg = dict(max_epochs=1, val_interval=1)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4)]
optim_wrapper = dict(optimizer=dict(lr=0.01))
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
log_processor = dict(window_size=1)
randomness = dict(seed=0)
