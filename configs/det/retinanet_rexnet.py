# RetinaNet + FPN, ReXNet-1.0x backbone, 1x schedule on COCO 2017 (16 images per batch).
# The bases of mmdet's retinanet_r50_fpn_1x_coco.py; the ReXNet part is in _base_/rexnet-1.0x.py.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    './_base_/coco_detection.py',  # data root from $COCO_ROOT (default data/coco/)
    'mmdet::_base_/schedules/schedule_1x.py',
    './_base_/default_runtime.py',  # crash-safe checkpoints
    'mmdet::retinanet/retinanet_tta.py',
    './_base_/rexnet-1.0x.py',
]
model = dict(backbone={{_base_.rexnet_backbone}}, neck=dict(in_channels={{_base_.rexnet_out_channels}}))
# lr 0.01 for 16 images as mmdet's RetinaNet R18/R50 (see docs/openmmlab.md "Hyper-parameters")
optim_wrapper = dict(optimizer=dict(lr=0.01, weight_decay={{_base_.rexnet_weight_decay}}))
