# The ReXNet-1.0x part of the detector configs, as variables: the detector configs write
#   model = dict(backbone={{_base_.rexnet_backbone}}, neck=dict(in_channels={{_base_.rexnet_out_channels}}))
custom_imports = dict(imports=['rexnet_backbones'], allow_failed_imports=False)
rexnet_backbone = dict(
    _delete_=True,  # drop the ResNet keys of mmdet's model base
    type='ReXNet',
    arch='rexnet_100',
    out_indices=(1, 2, 3, 4),  # strides 4, 8, 16, 32
    frozen_stages=2,  # stem and everything up to stride 4, as ResNet/RegNet freeze C2
    norm_cfg=dict(type='BN', requires_grad=True),
    norm_eval=True,
    init_cfg=dict(type='Pretrained', checkpoint='timm/rexnet_100.nav_in1k'))
rexnet_out_channels = [38, 61, 128, 185]  # = ReXNet(arch='rexnet_100').out_channels
# weight decay 5e-5 as mmdet's RegNet configs (light backbones with BN and depthwise convs)
rexnet_weight_decay = 5e-5
