_base_ = './retinanet_rexnet.py'
# ImageNet init: the official clovaai file rexnet_lite_2.0.pth (or its timm-format conversion)
# at checkpoints/rexnet_lite_2.0.pth; see docs/models.md "Pretrained weights".
model = dict(
    backbone=dict(arch='rexnet_lite_200', init_cfg=dict(checkpoint='checkpoints/rexnet_lite_2.0.pth')),
    neck=dict(in_channels=[80, 120, 248, 360]))
