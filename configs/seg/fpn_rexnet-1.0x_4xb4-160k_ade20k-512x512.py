# Semantic FPN, ReXNet-1.0x backbone, ADE20K 512x512, 160k iterations (4 GPUs x 4 images).
# Diff against mmseg's Semantic FPN R50 config: backbone (in _base_/rexnet.py) and FPN input channels.
_base_ = ['mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py', './_base_/rexnet.py']

# ADE20K root: data/ade/ADEChallengeData2016 by default; override with ADE_ROOT.
data_root = '{{$ADE_ROOT:data/ade/ADEChallengeData2016}}'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

# ReXNet-1.0x, strides 4, 8, 16, 32
model = dict(pretrained=None, backbone={{_base_.rexnet_backbone}}, neck=dict(in_channels=[38, 61, 128, 185]))
# optimizer: the base's SGD lr 0.01, weight decay 5e-4 for 16 images (mmseg's Semantic FPN recipe).
auto_scale_lr = dict(enable=False, base_batch_size=16)

# crash-safe checkpoints (atomic files and last_checkpoint)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
