# SSDLite, ReXNet-lite-1.0x backbone: the same level channels as ReXNet-1.0x (128 and 1280).
# ImageNet init: the official clovaai file rexnet_lite_1.0.pth (or its timm-format conversion) at
# checkpoints/rexnet_lite_1.0.pth; see docs/models.md "Pretrained weights".
_base_ = './ssdlite_rexnet-1.0x_8xb24-600e_coco.py'
model = dict(
    backbone=dict(arch='rexnet_lite_100', init_cfg=dict(checkpoint='checkpoints/rexnet_lite_1.0.pth')))
