_base_ = './retinanet_rexnet.py'
# ImageNet init: the official clovaai file rexnet_lite_1.0.pth (or its timm-format conversion)
# at checkpoints/rexnet_lite_1.0.pth; see docs/models.md "Pretrained weights".
model = dict(
    backbone=dict(arch='rexnet_lite_100', init_cfg=dict(checkpoint='checkpoints/rexnet_lite_1.0.pth')),
    neck=dict(in_channels=[40, 64, 128, 184]))
