# SSDLite, ReXNet-1.0x backbone (ImageNet init), COCO 2017: 8 GPUs x 24 images, 120 epochs of a 5x
# repeated set (= 600 epochs), 320 x 320. Diff against mmdet's SSDLite MobileNetV2 config (from
# scratch there): the backbone and the channels of the two levels fed to the SSD neck.
_base_ = 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'
# rexnet_backbones.mm.ssd_head: CompatSSDHead, mmdet 3.3.0's SSDHead fixed to predict (see that module)
custom_imports = dict(imports=['rexnet_backbones', 'rexnet_backbones.mm.ssd_head'], allow_failed_imports=False)

# COCO root: data/coco/ by default; override with the COCO_ROOT environment variable.
data_root = '{{$COCO_ROOT:data/coco/}}'
train_dataloader = dict(dataset=dict(dataset=dict(data_root=data_root)))  # inside RepeatDataset
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

# As MobileNetV2 feeds SSD with out_indices=(4, 7) (stride 16 and its final 1x1 conv), ReXNet gives
# its stride-16 level (3) and its final 1x1 head conv (5, stride 32); channels: ReXNet.out_channels.
backbone_channels = (128, 1280)
model = dict(
    backbone=dict(
        _delete_=True,
        type='ReXNet',
        arch='rexnet_100',
        out_indices=(3, 5),
        norm_cfg=dict(type='BN', eps=0.001, momentum=0.03),  # as the base config's BN
        init_cfg=dict(type='Pretrained', checkpoint='timm/rexnet_100.nav_in1k')),
    neck=dict(in_channels=backbone_channels, out_channels=backbone_channels + (512, 256, 256, 128)),
    bbox_head=dict(type='CompatSSDHead', in_channels=backbone_channels + (512, 256, 256, 128)))
