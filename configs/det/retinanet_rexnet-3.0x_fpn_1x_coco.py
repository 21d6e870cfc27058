_base_ = './retinanet_rexnet.py'
model = dict(
    backbone=dict(arch='rexnet_300', init_cfg=dict(checkpoint='timm/rexnet_300.nav_in1k')),
    neck=dict(in_channels=[116, 183, 386, 554]))
