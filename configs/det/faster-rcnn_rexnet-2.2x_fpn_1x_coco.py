_base_ = './faster-rcnn_rexnet.py'
# ReXNet-2.2x, the paper's 41.5 AP Faster R-CNN backbone. No ImageNet weights were released for this
# width: put your own (timm-format or official layout) at the path below, or set init_cfg=None.
model = dict(
    backbone=dict(arch='rexnet_220', init_cfg=dict(checkpoint='checkpoints/rexnet_2.2.pth')),
    neck=dict(in_channels=[85, 134, 283, 406]))
