_base_ = './faster-rcnn_rexnet.py'
model = dict(
    backbone=dict(arch='rexnet_150', init_cfg=dict(checkpoint='timm/rexnet_150.nav_in1k')),
    neck=dict(in_channels=[58, 92, 193, 277]))
