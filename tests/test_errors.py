"""Wrong inputs a user may give our tools: each exits non-zero with a message that names the file,
says what is wrong and what to do, and prints no traceback (issue "Nothing silently wrong").

The tools run as subprocesses on the tiny synthetic RetinaNet config (tests/configs).
"""
import shutil

import pytest

from _helpers_tools import DET_CONFIG, describe, run_tool

pytest.importorskip('mmdet')
torch = pytest.importorskip('torch')

pytestmark = pytest.mark.slow


def _build_tiny(**cfg_options):
    """The tiny RetinaNet of DET_CONFIG (optionally changed), as the Runner builds it."""
    from mmengine.config import Config
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    import rexnet_backbones  # noqa: F401
    cfg = Config.fromfile(DET_CONFIG)
    cfg.merge_from_dict(cfg_options)
    register_all_modules()
    torch.manual_seed(0)
    return MODELS.build(cfg.model)


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """A fitting checkpoint, one of another RetinaNet (other neck width) and a ResNet-18 state_dict."""
    import torchvision
    root = tmp_path_factory.mktemp('ckpts')
    good = root / 'good.pth'
    torch.save({'state_dict': _build_tiny().state_dict(), 'meta': {}}, good)
    other = root / 'other_retinanet.pth'
    torch.save({'state_dict': _build_tiny(**{'model.neck.out_channels': 16,
                                             'model.bbox_head.in_channels': 16}).state_dict(),
                'meta': {}}, other)
    r18 = root / 'resnet18.pth'
    torch.save(torchvision.models.resnet18().state_dict(), r18)
    return dict(good=good, other=other, r18=r18)


def _assert_clean_error(proc, *words):
    assert proc.returncode == 2, describe(proc)
    assert 'Traceback' not in proc.stderr, describe(proc)
    for word in words:
        assert word in proc.stderr, f'{word!r} not in the message\n{describe(proc)}'


# 1. another model's checkpoint -------------------------------------------------------------
def test_test_refuses_another_models_checkpoint(data_root, checkpoints, tmp_path):
    proc = run_tool('test.py', [DET_CONFIG, checkpoints['other'], '--work-dir', tmp_path], data_root, tmp_path)
    _assert_clean_error(proc, str(checkpoints['other']), 'does not fit the model', 'with another shape',
                        'another config', '--allow-partial')
    proc = run_tool('test.py', [DET_CONFIG, checkpoints['r18'], '--work-dir', tmp_path], data_root, tmp_path)
    _assert_clean_error(proc, 'resnet18.pth', 'model key(s) missing', 'unexpected', '(0 of ')


def test_allow_partial_loads_what_fits_and_says_so(data_root, checkpoints, tmp_path):
    proc = run_tool('test.py', [DET_CONFIG, checkpoints['other'], '--work-dir', tmp_path, '--allow-partial'],
                    data_root, tmp_path)
    assert proc.returncode == 0, describe(proc)
    log = proc.stdout + proc.stderr
    assert '--allow-partial: loading what fits' in log and 'coco/bbox_mAP' in log


def test_train_load_from_refuses_another_models_checkpoint(data_root, checkpoints, tmp_path):
    proc = run_tool('train.py', [DET_CONFIG, '--work-dir', tmp_path / 'wd', '--cfg-options',
                                 f'load_from={checkpoints["r18"]}'], data_root, tmp_path)
    _assert_clean_error(proc, 'resnet18.pth', 'does not fit the model')
    assert not list((tmp_path / 'wd').glob('*.pth'))  # nothing was trained


# 3. TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD ---------------------------------------------------------
def test_torch_force_no_weights_only_needs_explicit_trust(data_root, checkpoints, tmp_path):
    args = [DET_CONFIG, checkpoints['good'], '--work-dir', tmp_path]
    proc = run_tool('test.py', args, data_root, tmp_path, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1')
    _assert_clean_error(proc, 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 is set', 'runs any code', '--trust-checkpoint')
    proc = run_tool('train.py', [DET_CONFIG, '--work-dir', tmp_path / 'wd', '--resume'], data_root, tmp_path,
                    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1')
    _assert_clean_error(proc, 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 is set')
    proc = run_tool('test.py', args + ['--trust-checkpoint'], data_root, tmp_path,
                    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1')
    assert proc.returncode == 0, describe(proc)


# 6. corrupt annotation JSON -------------------------------------------------------------------
@pytest.mark.parametrize('split', ['train', 'val'])
def test_corrupt_annotation_json_is_named(data_root, tmp_path, split):
    root = tmp_path / 'data'
    shutil.copytree(data_root, root)
    ann = root / 'coco' / 'annotations' / f'instances_{split}2017.json'
    ann.write_text(ann.read_text()[:200])
    proc = run_tool('train.py', [DET_CONFIG, '--work-dir', tmp_path / 'wd'], str(root), tmp_path)
    _assert_clean_error(proc, str(ann), 'is not valid JSON', 'corrupt or truncated')


# 7-9. --resume -------------------------------------------------------------------------------
def test_resume_truncated_checkpoint(data_root, checkpoints, tmp_path):
    bad = tmp_path / 'epoch_1.pth'
    data = checkpoints['good'].read_bytes()
    bad.write_bytes(data[:len(data) // 2])
    proc = run_tool('train.py', [DET_CONFIG, '--work-dir', tmp_path, '--resume', bad], data_root, tmp_path)
    _assert_clean_error(proc, str(bad), 'truncated, corrupt')


def test_resume_with_empty_last_checkpoint_uses_newest_file(data_root, checkpoints, tmp_path):
    (tmp_path / 'last_checkpoint').write_text('')
    proc = run_tool('train.py', [DET_CONFIG, '--work-dir', tmp_path, '--resume'], data_root, tmp_path)
    # no checkpoint at all: a clear warning, then training from scratch
    assert proc.returncode == 0, describe(proc)
    log = proc.stdout + proc.stderr
    assert 'last_checkpoint is empty' in log and 'no checkpoint found in' in log
    assert 'Auto resumed from the latest checkpoint None' not in log


def test_resume_in_empty_work_dir_warns_and_missing_file_fails(data_root, tmp_path):
    proc = run_tool('train.py', [DET_CONFIG, '--work-dir', tmp_path / 'empty', '--resume', '--cfg-options',
                                 'train_cfg.max_epochs=1'], data_root, tmp_path)
    assert proc.returncode == 0, describe(proc)
    log = proc.stdout + proc.stderr
    assert 'WARNING - --resume: no checkpoint found in' in log and 'training starts from scratch' in log
    missing = tmp_path / 'nope.pth'
    proc = run_tool('train.py', [DET_CONFIG, '--work-dir', tmp_path / 'wd', '--resume', missing], data_root, tmp_path)
    _assert_clean_error(proc, f'--resume {missing}: checkpoint not found')


def test_debug_flag_shows_the_traceback(data_root, tmp_path):
    missing = tmp_path / 'nope.pth'
    proc = run_tool('train.py', [DET_CONFIG, '--work-dir', tmp_path, '--resume', missing, '--debug'],
                    data_root, tmp_path)
    assert proc.returncode == 2 and 'Traceback' in proc.stderr and 'checkpoint not found' in proc.stderr


# 18. a neck that does not take the backbone's channels -------------------------------------------
def test_wrong_neck_channels_name_backbone_out_channels(data_root, tmp_path):
    proc = run_tool('train.py', [DET_CONFIG, '--work-dir', tmp_path, '--cfg-options',
                                 'model.neck.in_channels=[38,61,128,512]'], data_root, tmp_path)
    _assert_clean_error(proc, 'model.neck.in_channels is [38, 61, 128, 512]',
                        'backbone.out_channels = [38, 61, 128, 185]')
