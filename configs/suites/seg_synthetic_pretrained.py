# The segmentation suite as the mission uses backbones: pretrain, then fine-tune, on a harder task.
#   python tools/suite.py run suites/seg_synthetic_pretrained.py --jobs 1/2 --threads 1 &
#   python tools/suite.py run suites/seg_synthetic_pretrained.py --jobs 2/2 --threads 1
#   python tools/suite.py report suites/seg_synthetic_pretrained.py
# 1. Every backbone is first trained under one recipe (pretrain below) as a classifier of the generated
#    shape x texture set and saved as <pretrain.dir>/<model>.pth (rexnet_backbones/suite/pretrain.py).
# 2. Each model's config loads it through model.backbone.init_cfg=dict(type='Pretrained', checkpoint=...),
#    the path a user takes with ImageNet weights, and fine-tunes every stage for each of 8 seeds.
# Harder than seg_synthetic.py (whose backbones all reach 92.6-94.2% mIoU): five shape classes instead of
# three (ellipse, diamond and hexagon are close) and every shape in a random colour (class_colours=False:
# colour no longer tells the class, the shape must), so that backbones can differ by more than seed noise.
# Everything else (models, segmentor, schedule, optimizer, 128 px) as seg_synthetic.py.
_base_ = ['./seg_synthetic.py']
name = 'seg_synthetic_pretrained'
seeds = [0, 1, 2, 3, 4, 5, 6, 7]

_root = 'data/suites/seg_synthetic_hard'
_classes = ('background', 'rectangle', 'ellipse', 'triangle', 'diamond', 'hexagon')
_palette = [[0, 0, 0], [215, 50, 50], [50, 190, 70], [50, 90, 225], [220, 200, 40], [170, 60, 200]]
data = dict(root=_root, num_train=128, num_val=64, img_size=(128, 128), num_classes=5, class_colours=False, seed=0)
pretrain = dict(dir='work_dirs/pretrain/seg_synthetic_pretrained', num_train=4000, num_val=1000, img_size=64,
                epochs=6, batch_size=32, optimizer='adamw', lr=2e-3, weight_decay=0.05, seed=0)
common = {
    'data_root': _root,
    'train_dataloader.dataset.data_root': _root,
    'test_dataloader.dataset.data_root': _root,
    'train_dataloader.dataset.metainfo': dict(classes=_classes, palette=_palette),
    'test_dataloader.dataset.metainfo': dict(classes=_classes, palette=_palette),
    'model.decode_head.num_classes': len(_classes),
}
