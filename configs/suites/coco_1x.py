# RetinaNet 1x on COCO 2017 with ImageNet-initialised backbones: the comparison a GPU cluster runs
# (not run on the development machine; tests/test_suite_run.py checks that it builds and shards).
#
#   # one machine, 8 GPUs, every job a torchrun over 8 processes, the 18 jobs one after another:
#   COCO_ROOT=data/coco/ python tools/suite.py run suites/coco_1x.py --launcher pytorch --gpus-per-job 8
#   # a slurm cluster, 3 shards in parallel into one shared work dir, each job an srun step of 8 GPUs:
#   for i in 1 2 3; do PARTITION=gpu COCO_ROOT=data/coco/ python tools/suite.py run suites/coco_1x.py \
#       --launcher slurm --gpus-per-job 8 --jobs $i/3 --work-dir /shared/suites/coco_1x & done; wait
#   python tools/suite.py report /shared/suites/coco_1x
#   (--dry-run prints each job's torchrun / srun command without running it)
#
# Cost: 6 models x 3 seeds = 18 RetinaNet 1x trainings (12 epochs, 16 images per batch, 8 GPUs each).
# mmdet 3.3's metafiles publish the baselines' training memory (RetinaNet R-18 1.7 GB, RegNetX-800MF
# 2.5 GB per GPU) but no training time. Measured proxy on one H200 (torchvision's RetinaNet on the same timm
# backbones, 800x1333, 2 images per GPU, fp32/TF32; docs/results/gpu_h200/train_throughput.md): 7.7-9.3 H200-hours per 1x
# run, about 160 H200-hours (about 20 hours on 8 GPUs) for the 18 jobs, evaluation and data loading not
# included; each job's result.json holds the measured train.time_s.
#
# Every model: our retinanet_rexnet.py (mmdet's RetinaNet R-50 FPN 1x recipe on COCO), SGD lr 0.01 for
# 16 images, weight decay 5e-5 (mmdet's RegNet recipe), gradient clipping at 35, the backbone's ImageNet
# weights with its first stage frozen and BN statistics fixed (mmdet's init policy). The one difference
# outside the backbone: RegNet's pycls ImageNet weights expect BGR inputs with pycls' mean and std (as
# mmdet's RegNet configs), so allow_recipe_differences=True and the report lists that key.
name = 'coco_1x'
task = 'det'
seeds = [0, 1, 2]
primary_metric = 'coco/bbox_mAP'
metrics = ['coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75', 'coco/bbox_mAP_s', 'coco/bbox_mAP_m',
           'coco/bbox_mAP_l']
reference = 'regnetx_800mf'
input_size = (800, 1333)
allow_recipe_differences = True

_base = 'det/retinanet_rexnet.py'
_bn = dict(type='BN', requires_grad=True)
_pycls = {'model.data_preprocessor': dict(mean=[103.53, 116.28, 123.675], std=[57.375, 57.12, 58.395],
                                          bgr_to_rgb=False)}


def _regnet(arch, channels):
    return dict(config=_base, label=f'RegNetX-{arch[8:].upper()}',
                backbone=dict(_delete_=True, type='RegNet', arch=arch, out_indices=(0, 1, 2, 3), frozen_stages=1,
                              norm_cfg=_bn, norm_eval=True, style='pytorch',
                              init_cfg=dict(type='Pretrained', checkpoint=f'open-mmlab://{arch}')),
                neck_in_channels=channels, options=_pycls)


models = dict(
    rexnet_100=dict(config=_base, label='ReXNet-1.0'),
    rexnet_lite_100=dict(config='det/retinanet_rexnet-lite-1.0x_fpn_1x_coco.py', label='ReXNet-lite-1.0'),
    regnetx_400mf=_regnet('regnetx_400mf', [32, 64, 160, 384]),
    regnetx_800mf=_regnet('regnetx_800mf', [64, 128, 288, 672]),
    resnet18=dict(config=_base, label='ResNet-18',
                  backbone=dict(_delete_=True, type='ResNet', depth=18, num_stages=4, out_indices=(0, 1, 2, 3),
                                frozen_stages=1, norm_cfg=_bn, norm_eval=True, style='pytorch',
                                init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
                  neck_in_channels=[64, 128, 256, 512]),
    mobilenetv2=dict(config=_base, label='MobileNetV2',
                     backbone=dict(_delete_=True, type='MobileNetV2', out_indices=(1, 2, 4, 6), frozen_stages=1,
                                   norm_cfg=_bn, norm_eval=True,
                                   init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://mmdet/mobilenet_v2')),
                     neck_in_channels=[24, 32, 96, 320]),
)

common = {
    'optim_wrapper': dict(_delete_=True, type='OptimWrapper',
                          optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-5),
                          clip_grad=dict(max_norm=35, norm_type=2)),
}
