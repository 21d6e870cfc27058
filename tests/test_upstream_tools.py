"""The configs also train with mmdet's and mmseg's own tools/train.py (shipped in their packages under
``.mim/tools``), given ``custom_imports=dict(imports=['rexnet_backbones'])``."""
from __future__ import annotations

import glob
import os.path as osp
import sys

import pytest

from _helpers_tools import DET_CONFIG, SEG_CONFIG, make_tool_data, run


def _upstream_train(package: str) -> str:
    mod = pytest.importorskip(package)
    path = osp.join(osp.dirname(mod.__file__), '.mim', 'tools', 'train.py')
    if not osp.isfile(path):
        pytest.skip(f'{package} was installed without its .mim tools')
    return path


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return make_tool_data(str(tmp_path_factory.mktemp('synthetic_upstream')))


@pytest.mark.slow
@pytest.mark.parametrize('package,config', [('mmdet', DET_CONFIG), ('mmseg', SEG_CONFIG)])
def test_upstream_train_tool(package, config, data_root, tmp_path):
    work_dir = tmp_path / package
    proc = run([sys.executable, _upstream_train(package), config, '--work-dir', work_dir],
               data_root, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert 'ReXNet' in log  # the model summary / config printed by the Runner
    assert glob.glob(str(work_dir / '*.pth')), 'no checkpoint written'
    metric = 'coco/bbox_mAP' if package == 'mmdet' else 'mIoU'
    assert metric in log
