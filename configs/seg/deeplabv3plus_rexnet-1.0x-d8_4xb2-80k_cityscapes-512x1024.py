# DeepLabV3+, ReXNet-1.0x backbone dilated to output stride 8, Cityscapes 512x1024, 80k iterations
# (4 GPUs x 2 images). Diff against mmseg's DeepLabV3+ R50-D8 config: backbone (in _base_/rexnet.py)
# and head channels.
_base_ = [
    'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb2-80k_cityscapes-512x1024.py',
    './_base_/rexnet.py',
]

# Cityscapes root: data/cityscapes/ by default; override with CITYSCAPES_ROOT.
data_root = '{{$CITYSCAPES_ROOT:data/cityscapes/}}'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

model = dict(
    pretrained=None,
    backbone={{_base_.rexnet_backbone_d8}},  # ReXNet-1.0x, strides 4, 8, 8, 8 (dilated)
    decode_head=dict(in_channels=185, c1_in_channels=38),
    auxiliary_head=dict(in_channels=128))
# optimizer: the base's SGD lr 0.01, weight decay 5e-4 for 8 images (mmseg's DeepLabV3+ recipe).
auto_scale_lr = dict(enable=False, base_batch_size=8)

# crash-safe checkpoints (atomic files and last_checkpoint)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
