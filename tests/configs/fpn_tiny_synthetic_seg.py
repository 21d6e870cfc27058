# Tiny Semantic-FPN segmentor on the synthetic shapes set (mmseg BaseSegDataset layout), for CPU
# tests. Data: `python tools/make_synthetic_data.py` (or the tests' fixtures) writes
# <SYNTHETIC_DATA_ROOT>/seg; SYNTHETIC_DATA_ROOT defaults to data/synthetic.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py', 'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_20k.py'
]
custom_imports = dict(imports=['rexnet_backbones'], allow_failed_imports=False)

# ---------------------------------------------------------------------------------------------
# Backbone: ReXNet (the block to edit to test another backbone). `_delete_=True` drops the base
# ResNet keys; `backbone_channels` are the channels of the 4 feature maps fed to the FPN.
# ---------------------------------------------------------------------------------------------
norm_cfg = dict(type='BN', requires_grad=True)
backbone = dict(
    _delete_=True,
    type='ReXNet',
    arch='rexnet_lite_100',
    out_indices=(1, 2, 3, 4),
    norm_cfg=norm_cfg,
    init_cfg=None)  # no download
backbone_channels = [40, 64, 128, 184]
# ---------------------------------------------------------------------------------------------

classes = ('background', 'rectangle', 'ellipse', 'triangle')
palette = [[0, 0, 0], [215, 50, 50], [50, 190, 70], [50, 90, 225]]
metainfo = dict(classes=classes, palette=palette)
data_root = '{{$SYNTHETIC_DATA_ROOT:data/synthetic}}/seg'
img_scale = (128, 128)

model = dict(
    pretrained=None,
    data_preprocessor=dict(size=img_scale),  # pad training batches to a fixed size
    backbone=backbone,
    neck=dict(in_channels=backbone_channels, out_channels=16),
    decode_head=dict(
        in_channels=[16, 16, 16, 16], channels=16, num_classes=len(classes), norm_cfg=norm_cfg))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='PackSegInputs')
]
dataset = dict(
    type='BaseSegDataset',
    data_root=data_root,
    metainfo=metainfo,
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=False)
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        **dataset,
        data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        **dataset,
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

train_cfg = dict(max_iters=2, val_interval=2)
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=2, by_epoch=False)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2))
log_processor = dict(window_size=1)
randomness = dict(seed=0)
