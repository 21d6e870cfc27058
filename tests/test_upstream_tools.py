"""The configs also train with mmdet's and mmseg's own tools/train.py (shipped in their packages under
``.mim/tools``), given ``custom_imports=dict(imports=['rexnet_backbones'])``."""
from __future__ import annotations

import glob
import os.path as osp
import sys

import pytest

from _helpers_tools import DET_CONFIG, SEG_CONFIG, logged_metric, run


def _upstream_train(package: str) -> str:
    mod = pytest.importorskip(package)
    path = osp.join(osp.dirname(mod.__file__), '.mim', 'tools', 'train.py')
    if not osp.isfile(path):
        pytest.skip(f'{package} was installed without its .mim tools')
    return path


@pytest.mark.slow
@pytest.mark.parametrize('package,config', [('mmdet', DET_CONFIG), ('mmseg', SEG_CONFIG)])
def test_upstream_train_tool(package, config, data_root, tmp_path):
    work_dir = tmp_path / package
    proc = run([sys.executable, _upstream_train(package), config, '--work-dir', work_dir],
               data_root, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert 'ReXNet' in log  # the model summary / config printed by the Runner
    (ckpt,) = glob.glob(str(work_dir / '*.pth'))  # the tiny configs save once, at their end
    # the backbone that trained is our ReXNet, whole: its parameters and buffers, no more, no less
    import torch
    from mmengine.config import Config
    from rexnet_backbones.mm import ReXNet
    backbone = Config.fromfile(config).model.backbone
    expected = ReXNet(arch=backbone.arch, out_indices=backbone.out_indices).state_dict()
    state = torch.load(ckpt, map_location='cpu', weights_only=False)['state_dict']  # written by this test
    assert {k[len('backbone.'):] for k in state if k.startswith('backbone.')} == set(expected)
    metric = 'coco/bbox_mAP' if package == 'mmdet' else 'mIoU'
    logged_metric(log, metric)  # raises AssertionError unless the validation at the end of training logged it
