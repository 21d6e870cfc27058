_base_ = './faster-rcnn_rexnet.py'
model = dict(
    backbone=dict(arch='rexnet_200', init_cfg=dict(checkpoint='timm/rexnet_200.nav_in1k')),
    neck=dict(in_channels=[77, 122, 257, 370]))
