# Mask R-CNN + FPN, ReXNet-1.0x backbone, 1x schedule on COCO 2017 (16 images per batch); the paper
# reports 38.9 box / 35.4 mask AP. The bases of mmdet's mask-rcnn_r50_fpn_1x_coco.py; the ReXNet
# part is in _base_/rexnet-1.0x.py.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    './_base_/coco_instance.py',  # data root from $COCO_ROOT (default data/coco/)
    'mmdet::_base_/schedules/schedule_1x.py',
    './_base_/default_runtime.py',  # crash-safe checkpoints
    './_base_/rexnet-1.0x.py',
]
model = dict(backbone={{_base_.rexnet_backbone}}, neck=dict(in_channels={{_base_.rexnet_out_channels}}))
# lr 0.02 for 16 images, as mmdet's Mask R-CNN RegNetX configs (see docs/openmmlab.md "Hyper-parameters")
optim_wrapper = dict(optimizer=dict(lr=0.02, weight_decay={{_base_.rexnet_weight_decay}}))
