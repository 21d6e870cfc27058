"""The set-up: mmcv checks before training (engine.env), the GPU check's CPU-only path, quiet tool starts,
tools/install_mmcv.sh keeping a fitting mmcv."""
from __future__ import annotations

import os
import os.path as osp
import subprocess
import sys

import pytest

pytest.importorskip('mmengine')
from _helpers_tools import REPO_ROOT, TOOLS  # noqa: E402
from rexnet_backbones.engine.env import MMCV_MAX, MMCV_MIN, check_mmcv, mmcv_problem  # noqa: E402
from rexnet_backbones.errors import ToolError  # noqa: E402

PKG_RESOURCES_WARNING = 'pkg_resources is deprecated'


def _mmcv_ops_are_cpu_only() -> bool:
    try:
        from mmcv.ops import get_compiling_cuda_version
    except ImportError:
        return False
    return get_compiling_cuda_version() == 'not available'


def _fake_mmcv(root, version: str) -> str:
    """A package named mmcv with only ``__version__``: what an out-of-range or ops-less mmcv looks like
    before its ops are imported."""
    pkg = root / 'mmcv'
    pkg.mkdir()
    (pkg / '__init__.py').write_text(f'__version__ = {version!r}\n')
    return str(root)


def _run(args, pythonpath_first: str = '', timeout: float = 300, **env_extra) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_extra)
    env['PYTHONPATH'] = os.pathsep.join(p for p in (pythonpath_first, REPO_ROOT, env.get('PYTHONPATH')) if p)
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)


@pytest.mark.skipif(not _mmcv_ops_are_cpu_only(), reason='needs the CPU-only mmcv ops of the CI set-up')
def test_cpu_only_mmcv_with_a_gpu_names_the_fix():
    problem = mmcv_problem(cuda_available=True)
    assert 'without CUDA kernels' in problem and 'nms, roi_align and sigmoid_focal_loss' in problem
    assert f'bash tools/install_mmcv.sh {sys.executable}' in problem
    with pytest.raises(ToolError, match='without CUDA kernels'):
        check_mmcv(cuda_available=True)
    # without a GPU the CPU-only ops are the right set-up
    assert mmcv_problem(cuda_available=False) is None


def test_mmcv_outside_the_range_is_one_message(tmp_path):
    """mmcv 2.2: one line naming the range, before mmdet's own AssertionError could happen."""
    fake = _fake_mmcv(tmp_path, '2.2.0')
    code = ('from rexnet_backbones.engine.env import mmcv_problem; '
            'print(mmcv_problem(cuda_available=False))')
    out = _run(['-c', code], fake)
    assert out.returncode == 0, out.stderr
    assert f'mmcv 2.2.0 is installed, but mmdet 3.x and mmsegmentation 1.x need mmcv>={MMCV_MIN},<{MMCV_MAX}' \
        in out.stdout


def test_mmcv_without_ops_is_one_message(tmp_path):
    fake = _fake_mmcv(tmp_path, '2.1.0')  # like mmcv-lite: no mmcv.ops
    code = ('from rexnet_backbones.engine.env import mmcv_problem; '
            'print(mmcv_problem(cuda_available=False))')
    out = _run(['-c', code], fake)
    assert "mmcv 2.1.0's compiled ops do not import" in out.stdout, out.stdout + out.stderr
    assert 'pip uninstall -y mmcv && bash tools/install_mmcv.sh' in out.stdout


@pytest.mark.slow
def test_tools_stop_on_an_unsupported_mmcv_before_training(tmp_path):
    fake = _fake_mmcv(tmp_path, '2.2.0')
    config = osp.join(REPO_ROOT, 'configs', 'det', 'retinanet_rexnet_synthetic.py')
    train = _run([osp.join(TOOLS, 'train.py'), config, '--work-dir', str(tmp_path / 'wd')], fake)
    assert train.returncode == 2, train.stderr
    assert train.stderr.startswith('error: mmcv 2.2.0 is installed, but mmdet 3.x'), train.stderr
    assert 'Traceback' not in train.stderr and not (tmp_path / 'wd').exists()
    check = _run([osp.join(TOOLS, 'check_setup.py')], fake)
    assert check.returncode == 1
    assert 'error: mmcv 2.2.0 is installed' in check.stderr and 'mmcv: 2.2.0' not in check.stdout


@pytest.mark.slow
def test_gpu_check_on_a_cpu_only_machine_checks_nothing(tmp_path):
    out = _run([osp.join(TOOLS, 'gpu_check.py'), '--work-dir', str(tmp_path / 'gc')], CUDA_VISIBLE_DEVICES='')
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith('no GPU visible') and 'nothing was checked' in out.stdout
    assert not (tmp_path / 'gc').exists()  # no data written, nothing trained


@pytest.mark.slow
def test_gpu_check_cpu_runs_every_step_and_writes_the_outputs(tmp_path):
    """``gpu_check.py --cpu``: the script on the CPU (ops against torchvision, a --amp + sync_bn + torchrun step
    of RetinaNet, Mask R-CNN and Semantic FPN, tools/test.py on each), the table, the JSON with the times, and every
    step's log. Faster R-CNN is left out for time: its path is Mask R-CNN's without the mask head."""
    import json
    import tarfile
    out_dir = tmp_path / 'out'
    out = _run([osp.join(TOOLS, 'gpu_check.py'), '--cpu', '--work-dir', str(tmp_path / 'gc'), '--out-dir',
                str(out_dir), '--models', 'RetinaNet', 'Mask R-CNN', 'Semantic FPN'], timeout=1500,
               CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1')
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert '8 of 8 checks passed' in out.stdout
    summary = json.loads((out_dir / 'gpu_check.json').read_text())
    assert summary['mode'] == 'cpu' and summary['passed'] == summary['checks'] == 8
    assert summary['total_s'] > 0 and summary['versions']['mmcv']
    names = [r['name'] for r in summary['rows']]
    for model in ('RetinaNet', 'Mask R-CNN', 'Semantic FPN'):
        assert f'{model}: tools/test.py' in names
    assert 'RetinaNet: 1 step, --amp, sync_bn, torchrun x1' in names
    assert 'Semantic FPN: 1 step, --amp, sync_bn, torchrun x1' in names
    assert 'Mask R-CNN: 1 step, fp32, sync_bn, torchrun x1' in names  # mmcv's CPU ops have no bfloat16
    table = (out_dir / 'gpu_check.md').read_text()
    assert '| RetinaNet: tools/test.py' in table and '8 of 8 checks passed' in table
    with tarfile.open(out_dir / 'gpu_check_logs.tar.gz') as tar:
        logs = tar.getnames()
    assert 'logs/train_mask-r-cnn.log' in logs and 'logs/test_semantic-fpn.log' in logs
    with tarfile.open(out_dir / 'gpu_check_logs.tar.gz') as tar:
        train_log = tar.extractfile('logs/train_retinanet.log').read().decode()
    assert 'CpuAmpOptimWrapper' in train_log and "sync_bn='torch' synchronizes BatchNorm over gloo" in train_log


def test_gpu_check_bundle_that_is_none_is_one_error_line(tmp_path):
    out = _run([osp.join(TOOLS, 'gpu_check.py'), '--bundle', str(tmp_path / 'nothing'), '--work-dir',
                str(tmp_path / 'gc')])
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith('error: ') and 'make gpu-bundle' in out.stderr


def test_gpu_bundle_pins_every_bundled_package():
    from rexnet_backbones.gpu_bundle import BINARY, MMCV, PURE, pins
    versions = pins(osp.join(REPO_ROOT, 'requirements', 'constraints.txt'))
    assert versions['mmcv'] == '2.1.0' and versions['mmengine'] == '0.10.7'
    assert all(name.replace('_', '-').lower() in versions for name in PURE + BINARY + (MMCV,))


def test_gpu_check_faster_rcnn_config_is_the_synthetic_set(tmp_path):
    from mmengine.config import Config

    from rexnet_backbones.engine.gpu_check import synthetic_config
    det = osp.join(REPO_ROOT, 'configs', 'det')
    out = synthetic_config(osp.join(det, 'faster-rcnn_rexnet.py'), osp.join(det, 'retinanet_rexnet_synthetic.py'),
                           str(tmp_path / 'faster.py'), data_root=str(tmp_path / 'data'))
    cfg = Config.fromfile(out)
    assert cfg.train_dataloader.dataset.data_root == f'{tmp_path}/data/coco/'
    assert cfg.val_evaluator.ann_file == f'{tmp_path}/data/coco/annotations/instances_val2017.json'
    assert cfg.model.type == 'FasterRCNN' and cfg.model.roi_head.bbox_head.num_classes == 3
    assert cfg.model.backbone.type == 'ReXNet' and cfg.model.backbone.init_cfg is None
    assert cfg.train_dataloader.dataset.ann_file == 'annotations/instances_train2017.json'
    assert cfg.train_dataloader.dataset.metainfo.classes == ('rectangle', 'ellipse', 'triangle')
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'


@pytest.mark.slow
def test_tool_start_is_quiet():
    """setuptools 80.9-81 warn 'pkg_resources is deprecated' each time mmengine loads a config."""
    config = osp.join(REPO_ROOT, 'configs', 'det', 'retinanet_rexnet.py')
    out = _run([osp.join(TOOLS, 'test.py'), config, 'missing.pth'])
    assert out.returncode == 2 and 'checkpoint not found' in out.stderr, out.stderr  # got past config loading
    assert PKG_RESOURCES_WARNING not in out.stderr
    helped = _run([osp.join(TOOLS, 'train.py'), '--help'])
    assert helped.returncode == 0 and PKG_RESOURCES_WARNING not in helped.stderr + helped.stdout


@pytest.mark.slow
def test_install_mmcv_keeps_a_fitting_mmcv():
    if not _mmcv_ops_are_cpu_only():
        pytest.skip('needs the CPU-only mmcv ops of the CI set-up')
    def check(arch_list: str) -> subprocess.CompletedProcess:
        return subprocess.run(['bash', osp.join(TOOLS, 'install_mmcv.sh'), '--check', sys.executable],
                              cwd=REPO_ROOT, env=dict(os.environ, TORCH_CUDA_ARCH_LIST=arch_list),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    out = check('')
    assert out.returncode == 0, out.stdout
    assert 'wanted: mmcv 2.1.0 with CPU-only ops' in out.stdout  # no GPU and no arch list: CPU ops
    assert 'kept the installed mmcv 2.1.0 (cpu ops)' in out.stdout
    # with an arch list and an nvcc for torch's CUDA, CUDA kernels are wanted and CPU-only ops are not kept
    out = check('9.0')
    if 'CUDA' in out.stdout.split('wanted:')[1].splitlines()[0]:
        assert out.returncode == 3, out.stdout
        assert 'the installed mmcv is not kept: its ops have no CUDA kernels' in out.stdout
    else:  # no nvcc of torch's CUDA version here (or a CPU torch)
        assert out.returncode == 0, out.stdout
