# The ReXNet part of the segmentation configs, as variables: mmseg's bases already define model, the
# dataloaders and default_hooks (keys a second base may not define again), so the configs write
#   model = dict(pretrained=None, backbone={{_base_.rexnet_backbone}}, ...)
# ReXNet-1.0x with ImageNet weights and synchronized BN, trained (not frozen) as mmseg's ResNet backbones
rexnet_backbone = dict(
    _delete_=True,  # drop the ResNet keys of mmseg's model base
    type='ReXNet',
    arch='rexnet_100',
    out_indices=(1, 2, 3, 4),  # strides 4, 8, 16, 32
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    norm_eval=False,
    init_cfg=dict(type='Pretrained', checkpoint='timm/rexnet_100.nav_in1k'))
# dilated to output stride 8: the same levels at strides 4, 8, 8, 8
rexnet_backbone_d8 = dict(rexnet_backbone, output_stride=8)
# ReXNet-lite-1.0x dilated to output stride 8, with MobileNetV3's BN eps
rexnet_lite_backbone_d8 = dict(
    rexnet_backbone_d8,
    arch='rexnet_lite_100',
    out_indices=(0, 1, 4),  # strides 2, 4 and the last level (8, dilated), as MobileNetV3-D8
    norm_cfg=dict(type='SyncBN', eps=0.001, requires_grad=True),
    # the official clovaai file (or its timm-format conversion); see docs/models.md "Pretrained weights"
    init_cfg=dict(type='Pretrained', checkpoint='checkpoints/rexnet_lite_1.0.pth'))
# registers ReXNet in mmseg's model registry
custom_imports = dict(imports=['rexnet_backbones'], allow_failed_imports=False)
