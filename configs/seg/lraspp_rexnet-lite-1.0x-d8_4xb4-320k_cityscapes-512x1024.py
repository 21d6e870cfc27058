# LR-ASPP (MobileNetV3's light head), ReXNet-lite-1.0x dilated to output stride 8, Cityscapes
# 512x1024, 320k iterations (4 GPUs x 4 images). Diff against mmseg's LR-ASPP MobileNetV3 config.
_base_ = 'mmseg::mobilenet_v3/mobilenet-v3-d8_lraspp_4xb4-320k_cityscapes-512x1024.py'
custom_imports = dict(imports=['rexnet_backbones'], allow_failed_imports=False)

data_root = '{{$CITYSCAPES_ROOT:data/cityscapes/}}'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='ReXNet',
        arch='rexnet_lite_100',
        out_indices=(0, 1, 4),  # strides 2, 4 and the last level (8, dilated), as MobileNetV3-D8
        output_stride=8,
        norm_cfg=dict(type='SyncBN', eps=0.001, requires_grad=True),
        norm_eval=False,
        # the official clovaai file (or its timm-format conversion); see docs/models.md "Pretrained weights"
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/rexnet_lite_1.0.pth')),
    decode_head=dict(in_channels=(16, 40, 184)))
# optimizer: the base's SGD lr 0.01, weight decay 5e-4 for 16 images (mmseg's LR-ASPP recipe).
auto_scale_lr = dict(enable=False, base_batch_size=16)

# crash-safe checkpoints (atomic files and last_checkpoint)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
