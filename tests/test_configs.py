"""Every shipped config (configs/**/*.py, found by glob) loads through mmengine's Config, names classes its
dataset has, and builds through the registries on the meta device, where a forward pass checks that each module
takes the channels the previous one gives (no weights, no compute). One config per model family (RetinaNet,
Faster R-CNN, Mask R-CNN, SSDLite, each mmseg decode head) also trains a step with batch 1 and batch 2 and
predicts, on CPU (small inputs; pretrained init switched off: offline); the other configs of a family differ from
it in the backbone width and the channels only."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

mmengine = pytest.importorskip('mmengine')
from mmengine.config import Config  # noqa: E402
from mmengine.optim import OptimWrapper  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

from rexnet_backbones.mm.checks import check_in_channels  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# configs/suites/ holds benchmark suites (rexnet_backbones.suite), not model configs
CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts and 'suites' not in p.parts)
# family (model type / head type) -> the config of it that trains; the others of the family are built and checked
TRAINED = {
    'RetinaNet/RetinaHead': 'det/retinanet_rexnet.py',
    'FasterRCNN/StandardRoIHead': 'det/faster-rcnn_rexnet.py',
    'MaskRCNN/StandardRoIHead': 'det/mask-rcnn_rexnet.py',
    'SingleStageDetector/CompatSSDHead': 'det/ssdlite_rexnet-1.0x_8xb24-600e_coco.py',
    'EncoderDecoder/DepthwiseSeparableASPPHead': 'seg/deeplabv3plus_rexnet-1.0x-d8_4xb2-80k_cityscapes-512x1024.py',
    'EncoderDecoder/FPNHead': 'seg/fpn_rexnet-1.0x_4xb4-160k_ade20k-512x512.py',
    'EncoderDecoder/LRASPPHead': 'seg/lraspp_rexnet-lite-1.0x-d8_4xb4-320k_cityscapes-512x1024.py',
}
SIZE = 96


def _id(path: Path) -> str:
    return path.stem


def _size(cfg_path: Path) -> int:
    # LR-ASPP pools with a fixed 49x49 window on the stride-8 map: it needs inputs >= 392 pixels
    return 400 if 'lraspp' in cfg_path.name else SIZE


def _family(model_cfg) -> str:
    head = model_cfg.get('decode_head') or model_cfg.get('roi_head') or model_cfg['bbox_head']
    return f"{model_cfg['type']}/{head['type']}"


def _registry(cfg):
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import DATASETS, MODELS
    else:
        from mmseg.registry import DATASETS, MODELS
    return MODELS, DATASETS


def _load(cfg_path: Path):
    """The config, with the checks every shipped config passes before anything is built."""
    cfg = Config.fromfile(str(cfg_path))
    assert cfg.model.backbone.type == 'ReXNet'
    if 'synthetic' not in cfg_path.name:  # the demo trains from scratch (offline)
        assert cfg.model.backbone.init_cfg['type'] == 'Pretrained', 'every config starts from ImageNet weights'
    scale = cfg.get('auto_scale_lr')
    assert scale is not None and scale.base_batch_size > 0
    gpus_batch = re.search(r'_(\d+)xb(\d+)', cfg_path.name)  # mmdet/mmseg naming: <gpus>x b<images per gpu>
    if gpus_batch:
        gpus, batch = map(int, gpus_batch.groups())
        assert cfg.train_dataloader.batch_size == batch, 'the name says the images per GPU'
        assert scale.base_batch_size == gpus * batch, 'auto_scale_lr.base_batch_size = the total batch of the name'
    cfg.model.backbone.init_cfg = None
    return cfg


def _dataset_classes(cfg, datasets) -> int:
    ds = cfg.train_dataloader.dataset
    while 'dataset' in ds:  # RepeatDataset and other wrappers
        ds = ds.dataset
    classes = (ds.get('metainfo') or {}).get('classes') or datasets.get(ds.type).METAINFO['classes']
    return len(classes)


def _heads_num_classes(model_cfg) -> dict:
    roi = model_cfg.get('roi_head') or {}
    heads = {'bbox_head': model_cfg.get('bbox_head'), 'roi_head.bbox_head': roi.get('bbox_head'),
             'roi_head.mask_head': roi.get('mask_head'), 'decode_head': model_cfg.get('decode_head'),
             'auxiliary_head': model_cfg.get('auxiliary_head')}
    return {k: h['num_classes'] for k, h in heads.items() if h and 'num_classes' in h}


def _meta_forward(model, cfg, size: int) -> None:
    """Forward a meta tensor through backbone, neck and heads: shapes only, a wrong channel count raises."""
    x = torch.empty(1, 3, size, size, device='meta')
    feats = model.backbone(x)
    assert [f.shape[1] for f in feats] == model.backbone.out_channels
    if hasattr(model, 'roi_head'):  # two-stage: the RPN on the neck; the RoI heads on RoI-sized features
        model.rpn_head(model.extract_feat(x))
        for name in ('bbox', 'mask'):
            head = getattr(model.roi_head, f'{name}_head', None)
            if head is not None:
                extractor = cfg.model.roi_head[f'{name}_roi_extractor']
                s = extractor.roi_layer.output_size
                head(torch.empty(2, extractor.out_channels, s, s, device='meta'))
    else:
        model._forward(x)


def _build(cfg):
    models, _ = _registry(cfg)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = models.build(cfg.model)
    return model


@pytest.mark.parametrize('cfg_path', CONFIGS, ids=_id)
def test_config_builds_and_fits_its_backbone(cfg_path):
    cfg = _load(cfg_path)
    family = _family(cfg.model)
    assert family in TRAINED, f'no config of the family {family} trains: add {cfg_path.name} to TRAINED'
    _, datasets = _registry(cfg)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        num_classes = _dataset_classes(cfg, datasets)
    assert set(_heads_num_classes(cfg.model).values()) == {num_classes}, 'heads predict the classes of the data'
    out_channels = check_in_channels(cfg.model)  # the config check the tools run
    neck_in = cfg.model.get('neck', {}).get('in_channels')
    if neck_in is not None:
        assert list(neck_in) == out_channels, 'neck in_channels must equal backbone.out_channels'
    with torch.device('meta'):
        model = _build(cfg)
        assert model.backbone.out_channels == out_channels
        with DefaultScope.overwrite_default_scope(cfg.default_scope):
            _meta_forward(model.eval(), cfg, _size(cfg_path))


def test_meta_forward_catches_a_neck_that_does_not_fit():
    cfg = _load(ROOT / 'configs' / 'det' / 'retinanet_rexnet.py')
    cfg.model.neck.in_channels = [38, 61, 128, 512]
    with torch.device('meta'):
        model = _build(cfg).eval()
        with DefaultScope.overwrite_default_scope('mmdet'), pytest.raises(RuntimeError, match='Invalid channel dimensions'):
            _meta_forward(model, cfg, SIZE)


def test_every_trained_config_exists():
    names = {p.relative_to(ROOT / 'configs').as_posix() for p in CONFIGS}
    assert set(TRAINED.values()) <= names


# ------------------------------------------------------------------------------------------ one per family
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


def _lighten_heads(model_cfg) -> None:
    """Fewer proposals/RoIs so that the two-stage detectors train on 2 CPU cores in seconds (same code paths)."""
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


def _trained_build(cfg_path: Path):
    torch.manual_seed(0)
    cfg = _load(cfg_path)
    _lighten_heads(cfg.model)
    if 'size' in cfg.model.data_preprocessor:
        cfg.model.data_preprocessor.size = (_size(cfg_path),) * 2
    model = _build(cfg)
    model.init_weights()
    return cfg, model


@pytest.mark.parametrize('cfg_path', [ROOT / 'configs' / p for p in TRAINED.values() if p.startswith('det/')],
                         ids=_id)
def test_det_family_trains_and_predicts(cfg_path):
    cfg, model = _trained_build(cfg_path)
    with_mask = (cfg.model.get('roi_head') or {}).get('mask_head') is not None
    # SSD's neck ends in 1x1 maps with BatchNorm: like mmseg's ASPP head it needs >= 2 images per GPU
    batch_sizes = (2, 3) if cfg.model.get('neck', {}).get('type') == 'SSDNeck' else (1, 2)
    with DefaultScope.overwrite_default_scope('mmdet'):
        out = _train_and_predict(model, lambda n: _det_batch(n, with_mask), batch_sizes)
    num_classes, = set(_heads_num_classes(cfg.model).values())
    for sample in out:
        pred = sample.pred_instances
        n = len(pred)
        assert pred.bboxes.shape == (n, 4) and pred.scores.shape == pred.labels.shape == (n,)
        assert n == 0 or int(pred.labels.max()) < num_classes
        if with_mask:
            assert pred.masks.shape == (n, SIZE, SIZE)


@pytest.mark.parametrize('cfg_path', [ROOT / 'configs' / p for p in TRAINED.values() if p.startswith('seg/')],
                         ids=_id)
def test_seg_family_trains_and_predicts(cfg_path):
    cfg, model = _trained_build(cfg_path)
    size = _size(cfg_path)
    # mmseg's ASPP head pools the image to 1x1 before a BatchNorm, which PyTorch refuses for one image
    # in training: that head needs >= 2 images per GPU (its recipe uses 2). The backbone itself trains
    # with batch 1 (tests/test_backbone.py, and the LR-ASPP and FPN configs here).
    batch_sizes = (2, 3) if cfg.model.decode_head.type == 'DepthwiseSeparableASPPHead' else (1, 2)
    with DefaultScope.overwrite_default_scope('mmseg'):
        out = _train_and_predict(model, lambda n: _seg_batch(n, size), batch_sizes)
    num_classes = cfg.model.decode_head.num_classes
    assert out[0].pred_sem_seg.data.shape == (1, size, size)
    assert out[0].seg_logits.data.shape == (num_classes, size, size)
    assert int(out[0].pred_sem_seg.data.max()) < num_classes


def test_data_root_env_override(monkeypatch):
    monkeypatch.setenv('COCO_ROOT', '/datasets/coco/')
    cfg = Config.fromfile(str(ROOT / 'configs/det/retinanet_rexnet.py'))
    assert cfg.train_dataloader.dataset.data_root == '/datasets/coco/'
    assert cfg.val_evaluator.ann_file == '/datasets/coco/annotations/instances_val2017.json'
    monkeypatch.delenv('COCO_ROOT')
    cfg = Config.fromfile(str(ROOT / 'configs/det/faster-rcnn_rexnet-1.3x_fpn_1x_coco.py'))
    assert cfg.test_dataloader.dataset.data_root == 'data/coco/'
