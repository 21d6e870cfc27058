"""Every shipped config builds through mmengine's Config and the registries, trains a step with
batch 1 and batch 2, and predicts, on CPU (small inputs; pretrained init switched off: offline)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

mmengine = pytest.importorskip('mmengine')
from mmengine.config import Config  # noqa: E402
from mmengine.optim import OptimWrapper  # noqa: E402
from mmengine.registry import DefaultScope, init_default_scope  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DET_CONFIGS = sorted((ROOT / 'configs' / 'det').glob('*.py'))
SEG_CONFIGS = sorted((ROOT / 'configs' / 'seg').glob('*.py'))
SIZE = 96


def _size(cfg_path: Path) -> int:
    # LR-ASPP pools with a fixed 49x49 window on the stride-8 map: it needs inputs >= 392 pixels
    return 400 if 'lraspp' in cfg_path.name else SIZE


def _build(cfg_path: Path):
    torch.manual_seed(0)
    cfg = Config.fromfile(str(cfg_path))
    assert cfg.model.backbone.type == 'ReXNet'
    if 'synthetic' not in cfg_path.name:  # the demo trains from scratch (offline)
        assert cfg.model.backbone.init_cfg['type'] == 'Pretrained', 'every config starts from ImageNet weights'
    assert cfg.get('auto_scale_lr') is not None
    cfg.model.backbone.init_cfg = None
    _lighten_heads(cfg.model)
    if 'size' in cfg.model.data_preprocessor:
        cfg.model.data_preprocessor.size = (_size(cfg_path),) * 2
    scope = cfg.default_scope
    init_default_scope(scope)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    model = MODELS.build(cfg.model)
    model.init_weights()
    backbone = model.backbone
    neck_in = cfg.model.get('neck', {}).get('in_channels')
    if neck_in is not None:
        assert list(neck_in) == backbone.out_channels, 'neck in_channels must equal backbone.out_channels'
    return cfg, model


def _lighten_heads(model_cfg) -> None:
    """Fewer proposals/RoIs so that 30 detectors train on 2 CPU cores in minutes (same code paths)."""
    train, test = model_cfg.get('train_cfg') or {}, model_cfg.get('test_cfg') or {}
    if 'rpn_proposal' in train:
        train.rpn_proposal.update(nms_pre=200, max_per_img=100)
        train.rcnn.sampler.num = 64
    if 'rpn' in test:
        test.rpn.update(nms_pre=200, max_per_img=100)
    for c in (test.get('rcnn'), test if 'nms_pre' in test else None):
        if c is not None and 'max_per_img' in c:
            c.max_per_img = 20
    if 'nms_pre' in test:
        test.nms_pre = 200


def _det_batch(n: int, with_mask: bool):
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    g = torch.Generator().manual_seed(n)
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.randint(0, 255, (3, SIZE, SIZE), generator=g, dtype=torch.uint8))
        s = DetDataSample(metainfo=dict(img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE), scale_factor=(1.0, 1.0),
                                        pad_shape=(SIZE, SIZE), batch_input_shape=(SIZE, SIZE)))
        gt = InstanceData()
        gt.bboxes = torch.tensor([[10., 12., 50., 60.], [40., 30., 90., 80.]])
        gt.labels = torch.tensor([1, 2])
        if with_mask:
            m = torch.zeros(2, SIZE, SIZE, dtype=torch.uint8)
            m[0, 12:60, 10:50] = 1
            m[1, 30:80, 40:90] = 1
            gt.masks = BitmapMasks(m.numpy(), SIZE, SIZE)
        s.gt_instances = gt
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def _seg_batch(n: int, size: int = SIZE):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(n)
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.randint(0, 255, (3, size, size), generator=g, dtype=torch.uint8))
        s = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 5, (1, size, size), generator=g))
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def _train_and_predict(model, make_batch, batch_sizes=(1, 2)):
    optim = OptimWrapper(torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3))
    model.train()
    for n in batch_sizes:  # one image per GPU must work (SE BatchNorm on a 1x1 map)
        before = {k: v.detach().clone() for k, v in model.backbone.named_parameters()}
        losses = model.train_step(make_batch(n), optim)
        total = sum(v for k, v in losses.items() if 'loss' in k)
        assert torch.isfinite(total), losses
        params = dict(model.backbone.named_parameters())
        changed = {k for k, v in before.items() if not torch.equal(v, params[k])}
        trainable = {k for k, p in params.items() if p.requires_grad}
        assert changed, 'no backbone weight was updated'
        assert changed <= trainable, f'frozen weights changed: {sorted(changed - trainable)[:5]}'
    model.eval()
    with torch.no_grad():
        out = model.test_step(make_batch(2))
    assert len(out) == 2
    return out


@pytest.mark.parametrize('cfg_path', DET_CONFIGS, ids=lambda p: p.stem)
def test_det_config_trains_and_predicts(cfg_path):
    cfg, model = _build(cfg_path)
    with_mask = 'mask' in cfg.model.get('roi_head', {}).get('mask_head', {}).get('type', '').lower() \
        or cfg.model.get('roi_head', {}).get('mask_head') is not None
    # SSD's neck ends in 1x1 maps with BatchNorm: like mmseg's ASPP head it needs >= 2 images per GPU
    batch_sizes = (2, 3) if cfg.model.get('neck', {}).get('type') == 'SSDNeck' else (1, 2)
    with DefaultScope.overwrite_default_scope('mmdet'):
        out = _train_and_predict(model, lambda n: _det_batch(n, with_mask), batch_sizes)
    assert 'bboxes' in out[0].pred_instances


@pytest.mark.parametrize('cfg_path', SEG_CONFIGS, ids=lambda p: p.stem)
def test_seg_config_trains_and_predicts(cfg_path):
    cfg, model = _build(cfg_path)
    size = _size(cfg_path)
    # mmseg's ASPP head pools the image to 1x1 before a BatchNorm, which PyTorch refuses for one image
    # in training: that head needs >= 2 images per GPU (its recipe uses 2). The backbone itself trains
    # with batch 1 (tests/test_backbone.py, and the LR-ASPP and FPN configs here).
    batch_sizes = (2, 3) if cfg.model.decode_head.type == 'DepthwiseSeparableASPPHead' else (1, 2)
    with DefaultScope.overwrite_default_scope('mmseg'):
        out = _train_and_predict(model, lambda n: _seg_batch(n, size), batch_sizes)
    assert out[0].pred_sem_seg.data.shape[-2:] == (size, size)


def test_data_root_env_override(monkeypatch):
    monkeypatch.setenv('COCO_ROOT', '/datasets/coco/')
    cfg = Config.fromfile(str(ROOT / 'configs/det/retinanet_rexnet.py'))
    assert cfg.train_dataloader.dataset.data_root == '/datasets/coco/'
    assert cfg.val_evaluator.ann_file == '/datasets/coco/annotations/instances_val2017.json'
    monkeypatch.delenv('COCO_ROOT')
    cfg = Config.fromfile(str(ROOT / 'configs/det/faster-rcnn_rexnet-1.3x_fpn_1x_coco.py'))
    assert cfg.test_dataloader.dataset.data_root == 'data/coco/'
