"""Session fixtures shared by the test modules: the official reference data, the small synthetic data sets,
and one trained tiny model per family (RetinaNet, Semantic-FPN), each made once per ``pytest`` run.

Helpers that are not fixtures live in ``tests/_helpers_tools.py`` and ``tests/_hub_cache.py``; pytest.ini puts
``tests/`` on ``sys.path`` (``pythonpath = tests``), so test modules import them as plain modules.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict
from unittest import mock

import pytest

from _helpers_tools import DET_CONFIG, SEG_CONFIG, make_tool_data

# Nothing may download at run time: make any hub access fail fast instead of retrying. Set at import, not in a
# fixture: huggingface_hub reads the variable once, when the test modules import timm during collection.
os.environ.setdefault('HF_HUB_OFFLINE', '1')

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get('REXNET_REFERENCE', ROOT.parent / 'shared' / 'reference'))


@pytest.fixture(scope='session')
def reference_dir() -> Path:
    """../shared/reference: official-code layouts, seeded official checkpoints, inputs and logits."""
    if not (REFERENCE / 'official_state_dict_layouts.json').is_file():
        pytest.skip(f'official reference data not found at {REFERENCE} (set REXNET_REFERENCE to its folder)')
    return REFERENCE


@pytest.fixture(autouse=True)
def _restore_environment():
    """Library calls under test may set variables (``enable_trusted_loading`` sets the trust opt-ins):
    each test ends with the environment it started with. Tests themselves set variables with ``monkeypatch``."""
    with mock.patch.dict(os.environ):
        yield


@pytest.fixture(scope='session')
def data_root(tmp_path_factory) -> str:
    """``SYNTHETIC_DATA_ROOT`` for tests/configs: ``coco/`` and ``seg/``, 8 train + 4 val images each (read-only:
    a test that changes files copies it first)."""
    return make_tool_data(str(tmp_path_factory.mktemp('synthetic')))


# ------------------------------------------------------------------------------------------ trained models
@dataclass(frozen=True)
class Trained:
    """A tiny model of tests/configs trained on synthetic data with mmengine's Runner, and its test metrics."""

    config: str  # the tests/configs file
    cfg: Any  # that config as trained (mmengine Config, schedule changed, no validation during training)
    checkpoint: Path
    data_root: str  # the SYNTHETIC_DATA_ROOT it was trained and tested on
    metrics: Dict[str, float]  # Runner.test() of ``checkpoint`` with PyTorch


def _load_config(path: str, data_root: str):
    from mmengine.config import Config
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('SYNTHETIC_DATA_ROOT', data_root)  # read by the config when it is loaded
        cfg = Config.fromfile(path)
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None  # the test below measures the result
    return cfg


def _train_and_test(cfg, config: str, data_root: str, work_dir: Path, checkpoint: str) -> Trained:
    """Train ``cfg`` in ``work_dir/train``, then test its ``checkpoint`` in ``work_dir/test``."""
    from mmengine.runner import Runner
    cfg.work_dir = str(work_dir / 'train')
    cfg.experiment_name = f'{work_dir.name}_train'
    Runner.from_cfg(copy.deepcopy(cfg)).train()
    test_cfg = copy.deepcopy(cfg)
    test_cfg.load_from = str(work_dir / 'train' / checkpoint)
    test_cfg.work_dir = str(work_dir / 'test')
    test_cfg.experiment_name = f'{work_dir.name}_test'
    metrics = Runner.from_cfg(test_cfg).test()
    return Trained(config, cfg, work_dir / 'train' / checkpoint, data_root, {k: float(v) for k, v in metrics.items()})


@pytest.fixture(scope='session')
def trained_det(tmp_path_factory) -> Trained:
    """The tiny RetinaNet-ReXNet of tests/configs, trained from scratch for 160 iterations (20 epochs of its own
    32 training images, batch 4, AdamW with warm-up and cosine decay; tested on its 8 val images).

    Trained on one intra-op thread: the result then does not depend on the core count (the old 80-iteration
    recipe reached bbox mAP 0.083 on 1 thread and 0.003 on 2), and it is also the fastest on a busy machine.
    Measured: bbox mAP 0.260 / 0.257 (seeds 0 / 1), about 33 CPU-seconds."""
    pytest.importorskip('mmdet')
    import torch
    from rexnet_backbones.data.synthetic import make_coco_detection
    work_dir = tmp_path_factory.mktemp('trained_det')
    root = str(work_dir / 'data')
    make_coco_detection(os.path.join(root, 'coco'), num_train=32, num_val=8, seed=0)
    cfg = _load_config(DET_CONFIG, root)
    cfg.model.backbone.norm_eval = False  # from scratch: learn the BN statistics
    cfg.train_dataloader.batch_size = 4
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=20)
    cfg.optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=2e-3, weight_decay=5e-5),
                             clip_grad=dict(max_norm=10))
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
        dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=20, T_max=20, eta_min=1e-4)]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=20)
    cfg.default_hooks.logger.interval = 40
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_and_test(cfg, DET_CONFIG, root, work_dir, 'epoch_20.pth')
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope='session')
def trained_seg(data_root, tmp_path_factory) -> Trained:
    """The tiny Semantic-FPN-ReXNet of tests/configs, trained for 100 iterations on the 8 training images."""
    pytest.importorskip('mmseg')
    cfg = _load_config(SEG_CONFIG, data_root)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=100)
    cfg.optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-2, weight_decay=5e-5))
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100, by_epoch=False)
    cfg.default_hooks.logger.interval = 20
    return _train_and_test(cfg, SEG_CONFIG, data_root, tmp_path_factory.mktemp('trained_seg'), 'iter_100.pth')


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one intra-op thread is fastest, and it does not stall on a busy machine."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
