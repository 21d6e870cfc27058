_base_ = './mask-rcnn_rexnet.py'
model = dict(
    backbone=dict(arch='rexnet_130', init_cfg=dict(checkpoint='timm/rexnet_130.nav_in1k')),
    neck=dict(in_channels=[50, 79, 167, 240]))
