# The detection suite as the mission uses backbones: pretrain, then fine-tune, with 8 seeds.
#   python tools/suite.py run suites/det_synthetic_pretrained.py --jobs 1/2 --threads 1 &
#   python tools/suite.py run suites/det_synthetic_pretrained.py --jobs 2/2 --threads 1
#   python tools/suite.py report suites/det_synthetic_pretrained.py
# 1. Every backbone is first trained under one recipe (pretrain below, the same as the segmentation suite's)
#    as a classifier of the generated shape x texture set and saved as <pretrain.dir>/<model>.pth.
# 2. Each model's config loads it through model.backbone.init_cfg=dict(type='Pretrained', checkpoint=...)
#    and fine-tunes every stage for each of 8 seeds. Everything else as det_synthetic.py.
_base_ = ['./det_synthetic.py']
name = 'det_synthetic_pretrained'
seeds = [0, 1, 2, 3, 4, 5, 6, 7]
pretrain = dict(dir='work_dirs/pretrain/det_synthetic_pretrained', num_train=4000, num_val=1000, img_size=64,
                epochs=6, batch_size=32, optimizer='adamw', lr=2e-3, weight_decay=0.05, seed=0)
