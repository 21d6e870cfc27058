"""A training killed mid-run continues from its last checkpoint with `tools/train.py --resume`, ends at
the same iteration count as an uninterrupted run, with losses in the same range."""
from __future__ import annotations

import glob
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from _helpers_tools import DET_CONFIG, NUM_TRAIN, TOOLS, make_tool_data, run_tool, tool_env

EPOCHS = 4
BATCH = 2
ITERS = EPOCHS * NUM_TRAIN // BATCH
ARGS = ['--cfg-options', f'train_cfg.max_epochs={EPOCHS}', 'train_cfg.val_interval=100',
        'default_hooks.checkpoint.interval=1']


def _losses(work_dir) -> list[float]:
    out = []
    for path in sorted(glob.glob(str(work_dir / '*' / 'vis_data' / 'scalars.json'))):
        with open(path) as f:
            out += [json.loads(line)['loss'] for line in f if '"loss"' in line]
    return out


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_end(tmp_path):
    import rexnet_backbones  # noqa: F401  (safe-load allowlist for the checks below)
    data_root = make_tool_data(str(tmp_path / 'data'))
    work_dir = tmp_path / 'wd'
    proc = subprocess.Popen([sys.executable, os.path.join(TOOLS, 'train.py'), DET_CONFIG, '--work-dir',
                             str(work_dir), *ARGS], cwd=tmp_path, env=tool_env(data_root),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    try:
        while not (work_dir / 'epoch_1.pth').exists():
            assert proc.poll() is None, 'training ended before its first checkpoint'
            assert time.time() < deadline, 'no checkpoint within 5 minutes'
            time.sleep(0.2)
        time.sleep(1.0)  # into epoch 2
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (work_dir / f'epoch_{EPOCHS}.pth').exists(), 'killed too late to test anything'
    first_losses = _losses(work_dir)
    last = (work_dir / 'last_checkpoint').read_text().strip()
    assert os.path.exists(last)

    resumed = run_tool('train.py', [DET_CONFIG, '--work-dir', work_dir, '--resume', *ARGS], data_root,
                       cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resumed epoch' in resumed.stdout + resumed.stderr
    final = torch.load(work_dir / f'epoch_{EPOCHS}.pth', map_location='cpu')  # weights_only, allowlisted
    assert final['meta']['epoch'] == EPOCHS and final['meta']['iter'] == ITERS
    assert not [p for p in os.listdir(work_dir) if p.endswith('.tmp')]
    losses = _losses(work_dir)[len(first_losses):]
    assert first_losses and losses and all(math.isfinite(x) and x > 0 for x in first_losses + losses)
    # the resumed run continues the same optimisation: no restart from scratch, no divergence
    assert max(losses) < 1.5 * first_losses[0]
