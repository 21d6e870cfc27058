"""SSDLite with ReXNet (configs/det/ssdlite_rexnet-*): a small diff over mmdet's SSDLite MobileNetV2
config, consistent channels, and a few training iterations + COCO evaluation on the synthetic set."""
from __future__ import annotations

import math
import os.path as osp

import pytest
import torch

pytest.importorskip('mmdet')
import mmdet  # noqa: E402
from mmengine.config import Config  # noqa: E402

from rexnet_backbones.mm import ReXNet  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = {
    'rexnet_100': osp.join(ROOT, 'configs', 'det', 'ssdlite_rexnet-1.0x_8xb24-600e_coco.py'),
    'rexnet_lite_100': osp.join(ROOT, 'configs', 'det', 'ssdlite_rexnet-lite-1.0x_8xb24-600e_coco.py'),
}
BASE_NAME = 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'


@pytest.fixture(scope='module')
def base_cfg(tmp_path_factory):
    """mmdet's config loaded as our configs inherit it (same ``_scope_`` annotations)."""
    path = tmp_path_factory.mktemp('base') / 'ssdlite_mobilenetv2.py'
    path.write_text(f"_base_ = '{BASE_NAME}'\n")
    return Config.fromfile(str(path))


@pytest.mark.parametrize('arch', sorted(CONFIGS))
def test_ssdlite_config_is_mmdets_recipe_with_a_rexnet(arch, base_cfg):
    cfg, base = Config.fromfile(CONFIGS[arch]), base_cfg
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.arch, tuple(backbone.out_indices)) == ('ReXNet', arch, (3, 5))
    assert backbone.init_cfg['type'] == 'Pretrained'
    # the two levels SSD takes from the backbone: stride 16 and the final 1x1 conv (stride 32)
    channels = ReXNet(arch=arch, out_indices=(3, 5)).out_channels
    assert list(cfg.model.neck.in_channels) == channels == [128, 1280]
    assert list(cfg.model.neck.out_channels[:2]) == channels
    assert list(cfg.model.bbox_head.in_channels) == list(cfg.model.neck.out_channels)
    assert cfg.model.bbox_head.type == 'CompatSSDHead'
    # everything else is mmdet's recipe
    for key in ('train_pipeline', 'test_pipeline', 'optim_wrapper', 'param_scheduler', 'train_cfg',
                'auto_scale_lr'):
        assert cfg[key] == base[key], key
    for key in ('anchor_generator', 'bbox_coder', 'num_classes', 'use_depthwise', 'norm_cfg', 'act_cfg'):
        assert cfg.model.bbox_head[key] == base.model.bbox_head[key], key
    for key in ('level_strides', 'level_paddings', 'use_depthwise', 'norm_cfg', 'act_cfg'):
        assert cfg.model.neck[key] == base.model.neck[key], key
    assert cfg.model.train_cfg == base.model.train_cfg and cfg.model.test_cfg == base.model.test_cfg
    assert cfg.model.data_preprocessor == base.model.data_preprocessor
    assert backbone.norm_cfg == dict(type='BN', eps=0.001, momentum=0.03) == base.model.backbone.norm_cfg


@pytest.mark.skipif(mmdet.__version__ != '3.3.0', reason="mmdet 3.3.0's SSDHead predict bug")
def test_compat_ssd_head_predicts_where_mmdets_fails(base_cfg):
    from mmdet.models.dense_heads import SSDHead
    from mmdet.structures import DetDataSample

    from rexnet_backbones.mm.ssd_head import CompatSSDHead
    torch.manual_seed(0)
    base = base_cfg.model.bbox_head
    kwargs = {k: v for k, v in base.items() if k not in ('type', '_scope_')}
    kwargs.update(num_classes=3, test_cfg=base_cfg.model.test_cfg)
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):  # the head builds its anchor generator from mmdet's registry
        heads = [SSDHead(**kwargs).eval(), CompatSSDHead(**kwargs).eval()]
    heads[1].load_state_dict(heads[0].state_dict())
    feats = [torch.randn(1, c, s, s) for c, s in zip(base.in_channels, (20, 10, 5, 3, 2, 1))]
    sample = DetDataSample(metainfo=dict(img_shape=(320, 320), ori_shape=(320, 320), scale_factor=(1.0, 1.0)))
    with pytest.raises(AttributeError, match="'SSDHead' object has no attribute 'loss_cls'"):
        heads[0].predict(feats, [sample])
    (result,) = heads[1].predict(feats, [sample])
    # scores: softmax over 3 classes + background, as mmdet < 3.3
    cls = torch.cat([c.permute(0, 2, 3, 1).reshape(-1, 4) for c in heads[1](feats)[0]])
    assert result.scores.max() == pytest.approx(cls.softmax(-1)[:, :3].max().item(), abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize('arch', sorted(CONFIGS))
def test_ssdlite_trains_and_evaluates_on_synthetic_data(arch, tmp_path):
    """A few iterations of the real recipe (320 x 320, Expand / MinIoURandomCrop / photometric
    augmentation, RepeatDataset), then validation with CocoMetric."""
    from mmengine.runner import Runner

    from rexnet_backbones.data.synthetic import DET_CLASSES, make_coco_detection
    data = str(tmp_path / 'coco') + '/'
    make_coco_detection(data, num_train=4, num_val=2, seed=0)
    cfg = Config.fromfile(CONFIGS[arch])
    cfg.model.backbone.init_cfg = None  # offline
    cfg.model.bbox_head.num_classes = len(DET_CLASSES)
    meta = dict(classes=DET_CLASSES)
    train_set = cfg.train_dataloader.dataset.dataset
    train_set.update(data_root=data, metainfo=meta, filter_cfg=dict(filter_empty_gt=True, min_size=8))
    cfg.train_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False)
    cfg.val_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False)
    cfg.val_dataloader.dataset.update(data_root=data, metainfo=meta)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.val_evaluator.ann_file = data + 'annotations/instances_val2017.json'
    cfg.test_evaluator = cfg.val_evaluator
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=3, val_interval=3)
    cfg.param_scheduler = []
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=3, by_epoch=False)
    cfg.log_processor = dict(by_epoch=False, window_size=1)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.experiment_name = f'ssdlite_{arch}'
    cfg.randomness = dict(seed=0)

    runner = Runner.from_cfg(cfg)
    before = {k: v.detach().clone() for k, v in runner.model.backbone.named_parameters()}
    runner.train()
    history = runner.message_hub.log_scalars
    losses = history['train/loss'].data[0]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses), losses
    assert {'train/loss_cls', 'train/loss_bbox'} <= set(history)
    after = dict(runner.model.backbone.named_parameters())
    unchanged = {k for k, v in before.items() if torch.equal(v, after[k])}
    # only ReXNet-1.0x's SE fc1 biases stay: a BatchNorm follows them, so their gradient is exactly 0
    assert all(k.endswith('se.fc1.bias') for k in unchanged), sorted(unchanged)[:5]
    assert len(unchanged) < len(before) // 10
    # the checkpoint holds the validated model: a new Runner that loads it gives the same head outputs and
    # tests to the same COCO metrics as the validation at the end of training
    x = torch.rand(1, 3, 320, 320, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = runner.model.eval()(x, mode='tensor')
    cfg.load_from = str(tmp_path / 'work' / 'iter_3.pth')
    cfg.work_dir = str(tmp_path / 'test')
    cfg.experiment_name = f'ssdlite_{arch}_test'
    test_runner = Runner.from_cfg(cfg)
    metrics = test_runner.test()
    with torch.no_grad():
        got = test_runner.model.eval()(x, mode='tensor')
    for e, g in zip(expected[0] + expected[1], got[0] + got[1]):  # 6 levels of class scores, then of boxes
        assert torch.equal(e, g)
    for key in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75'):
        assert metrics[f'coco/{key}'] == pytest.approx(history[f'val/coco/{key}'].current(), abs=1e-6), key
