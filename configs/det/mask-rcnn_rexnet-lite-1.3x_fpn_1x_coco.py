_base_ = './mask-rcnn_rexnet.py'
# ImageNet init: the official clovaai file rexnet_lite_1.3.pth (or its timm-format conversion)
# at checkpoints/rexnet_lite_1.3.pth; see docs/models.md "Pretrained weights".
model = dict(
    backbone=dict(arch='rexnet_lite_130', init_cfg=dict(checkpoint='checkpoints/rexnet_lite_1.3.pth')),
    neck=dict(in_channels=[48, 80, 160, 232]))
