"""Shared helpers for tests/test_tools.py and tests/test_synthetic.py (not a test module)."""
import os
import os.path as osp
import re
import socket
import subprocess
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(REPO_ROOT, 'tools')
TEST_CONFIGS = osp.join(REPO_ROOT, 'tests', 'configs')
DET_CONFIG = osp.join(TEST_CONFIGS, 'retinanet_tiny_synthetic.py')
DET_DIST_CONFIG = osp.join(TEST_CONFIGS, 'retinanet_tiny_synthetic_dist.py')
SEG_CONFIG = osp.join(TEST_CONFIGS, 'fpn_tiny_synthetic_seg.py')

# sizes of the synthetic sets the tool tests use (the configs train 1 epoch = 4 iterations)
NUM_TRAIN, NUM_VAL = 8, 4


def make_tool_data(root: str) -> str:
    """Write the small det + seg sets under ``root`` (what SYNTHETIC_DATA_ROOT points to)."""
    from rexnet_backbones.data.synthetic import make_coco_detection, make_segmentation
    make_coco_detection(osp.join(root, 'coco'), num_train=NUM_TRAIN, num_val=NUM_VAL, seed=0)
    make_segmentation(osp.join(root, 'seg'), num_train=NUM_TRAIN, num_val=NUM_VAL, seed=0)
    return root


def tool_env(data_root: str, **extra) -> dict:
    env = dict(os.environ)
    env.update(
        SYNTHETIC_DATA_ROOT=str(data_root),
        # 2 shared cores: one thread per process is much faster than oversubscription
        OMP_NUM_THREADS='1',
        MKL_NUM_THREADS='1',
        PYTHONWARNINGS='ignore',
    )
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (REPO_ROOT, TEST_CONFIGS, env.get('PYTHONPATH')) if p)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(cmd, data_root: str, cwd: str, timeout: float = 300, **env_extra):
    """Run ``cmd`` (list) and return the CompletedProcess (text, stdout+stderr kept apart)."""
    return subprocess.run(
        [str(c) for c in cmd],
        cwd=str(cwd),
        env=tool_env(data_root, **env_extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout)


def run_tool(tool: str, args, data_root: str, cwd: str, timeout: float = 300, **env_extra):
    return run([sys.executable, osp.join(TOOLS, tool), *args], data_root, cwd, timeout,
               **env_extra)


def describe(proc) -> str:
    """Tail of a finished process' output, for assertion messages."""
    return (f'exit code {proc.returncode}\n--- stdout (tail) ---\n{proc.stdout[-4000:]}'
            f'\n--- stderr (tail) ---\n{proc.stderr[-4000:]}')


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


_METRIC_RE = r'{}:\s+(-?[0-9.]+)'


def logged_metric(text: str, name: str, occurrence: int = -1) -> float:
    """Value of ``name`` (e.g. 'coco/bbox_mAP', 'mIoU') in an mmengine log; last one by default."""
    values = re.findall(_METRIC_RE.format(re.escape(name)), text)
    if not values:
        raise AssertionError(f'{name} not found in the log')
    return float(values[occurrence])
