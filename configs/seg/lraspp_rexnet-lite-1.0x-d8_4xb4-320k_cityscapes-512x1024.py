# LR-ASPP (MobileNetV3's light head), ReXNet-lite-1.0x dilated to output stride 8, Cityscapes
# 512x1024, 320k iterations (4 GPUs x 4 images). Diff against mmseg's LR-ASPP MobileNetV3 config:
# backbone (in _base_/rexnet.py) and head channels.
_base_ = [
    'mmseg::mobilenet_v3/mobilenet-v3-d8_lraspp_4xb4-320k_cityscapes-512x1024.py',
    './_base_/rexnet.py',
]

data_root = '{{$CITYSCAPES_ROOT:data/cityscapes/}}'  # or $CITYSCAPES_ROOT
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

# ReXNet-lite-1.0x, strides 2, 4 and 8 (dilated)
model = dict(pretrained=None, backbone={{_base_.rexnet_lite_backbone_d8}}, decode_head=dict(in_channels=(16, 40, 184)))
# optimizer: the base's SGD lr 0.01, weight decay 5e-4 for 16 images (mmseg's LR-ASPP recipe).
auto_scale_lr = dict(enable=False, base_batch_size=16)

# crash-safe checkpoints (atomic files and last_checkpoint)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
