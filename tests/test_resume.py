"""Kill a training run mid-way, continue it with ``tools/train.py --resume``.

End to end, as a user would: ``tools/train.py`` on the tiny RetinaNet/ReXNet config
(tests/configs/retinanet_tiny_synthetic.py) for 4 epochs on 8 synthetic images is SIGKILLed
(with its whole process group) once a checkpoint has been written, then restarted with the same
arguments plus ``--resume``. The resumed run must pick up the latest checkpoint, end at the
iteration count of an uninterrupted run, write checkpoints that load with ``weights_only=True``
and log finite losses in the same range as the interrupted run.
"""
import glob
import json
import math
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time

import pytest

from _helpers_tools import DET_CONFIG, TOOLS, tool_env

pytest.importorskip('mmdet')
torch = pytest.importorskip('torch')

MAX_EPOCHS = 4
# No validation during training (mmengine still validates once after the last epoch).
TRAIN_ARGS = [
    DET_CONFIG, '--cfg-options', f'train_cfg.max_epochs={MAX_EPOCHS}',
    'train_cfg.val_interval=100', 'default_hooks.checkpoint.interval=1'
]
KILL_TIMEOUT = 240  # s until a first checkpoint must exist
RESUME_TIMEOUT = 300


def _iters_per_epoch(data_root: str) -> int:
    """Iterations per epoch implied by the config and the data (no hardcoded 4)."""
    from mmengine.config import Config
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('SYNTHETIC_DATA_ROOT', data_root)  # read by the config
        cfg = Config.fromfile(DET_CONFIG)
    loader = cfg.train_dataloader
    ds = loader.dataset
    with open(osp.join(ds.data_root, ds.ann_file)) as f:
        coco = json.load(f)
    with_boxes = {a['image_id'] for a in coco['annotations']}
    # filter_empty_gt=True: only images with annotations are trained on
    num_images = sum(1 for im in coco['images'] if im['id'] in with_boxes)
    assert num_images > 0
    if loader.get('drop_last', False):
        return num_images // loader.batch_size
    return math.ceil(num_images / loader.batch_size)


def _train_cmd(work_dir, *extra):
    return [sys.executable, osp.join(TOOLS, 'train.py'), *TRAIN_ARGS, '--work-dir',
            str(work_dir), *extra]


def _last_checkpoint(work_dir) -> str:
    try:
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            return f.read().strip()
    except OSError:
        return ''


def _scalars(run_dir: str) -> list:
    """Records of <work_dir>/<timestamp>/vis_data/scalars.json (a killed run may end mid-line)."""
    records = []
    with open(osp.join(run_dir, 'vis_data', 'scalars.json')) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return [r for r in records if 'loss' in r]


def _tail(path, n=4000) -> str:
    with open(path, errors='replace') as f:
        return f.read()[-n:]


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_end(data_root, tmp_path):
    iters_per_epoch = _iters_per_epoch(data_root)
    total_iters = MAX_EPOCHS * iters_per_epoch  # what an uninterrupted run ends at
    work_dir = tmp_path / 'work'
    env = tool_env(data_root)

    # ---- run 1: start, wait for epoch_1 (or epoch_2) to be the latest checkpoint, SIGKILL ----
    log1 = tmp_path / 'run1.log'
    with open(log1, 'w') as out:
        proc = subprocess.Popen(_train_cmd(work_dir), cwd=str(tmp_path), env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    killed_at = None
    deadline = time.monotonic() + KILL_TIMEOUT
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            latest = _last_checkpoint(work_dir)
            if osp.basename(latest) in ('epoch_1.pth', 'epoch_2.pth') and osp.isfile(latest):
                os.killpg(proc.pid, signal.SIGKILL)
                killed_at = osp.basename(latest)
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert killed_at is not None, f'no checkpoint within {KILL_TIMEOUT}s\n{_tail(log1)}'
    assert proc.returncode == -signal.SIGKILL, f'exit code {proc.returncode}\n{_tail(log1)}'
    # it really died before finishing
    assert not (work_dir / f'epoch_{MAX_EPOCHS}.pth').exists()
    assert not (work_dir / f'epoch_{MAX_EPOCHS - 1}.pth').exists()
    killed_epoch = int(killed_at[len('epoch_'):-len('.pth')])
    run_dirs_1 = sorted(glob.glob(str(work_dir / '2*' / 'vis_data' / 'scalars.json')))
    assert len(run_dirs_1) == 1

    # ---- run 2: same arguments + --resume, to completion ----
    log2 = tmp_path / 'run2.log'
    with open(log2, 'w') as out:
        proc2 = subprocess.Popen(_train_cmd(work_dir, '--resume'), cwd=str(tmp_path), env=env,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        rc = proc2.wait(timeout=RESUME_TIMEOUT)
    finally:
        if proc2.poll() is None:
            os.killpg(proc2.pid, signal.SIGKILL)
            proc2.wait(timeout=30)
    text2 = log2.read_text(errors='replace')
    assert rc == 0, text2[-6000:]

    # it resumed from the checkpoint named by last_checkpoint when run 1 was killed (or a later
    # one, if run 1 got to save it between the check and the kill)
    resumed = re.findall(r'resumed epoch: (\d+), iter: (\d+)', text2)
    assert len(resumed) == 1, text2[-6000:]
    start_epoch, start_iter = map(int, resumed[0])
    assert killed_epoch <= start_epoch < MAX_EPOCHS
    assert start_iter == start_epoch * iters_per_epoch
    assert f'Epoch(train) [{start_epoch}]' not in text2  # no epoch trained twice
    assert f'Epoch(train) [{MAX_EPOCHS}][{iters_per_epoch}/{iters_per_epoch}]' in text2

    # ---- final checkpoint: same end as an uninterrupted run, loads weights-only ----
    import rexnet_backbones  # noqa: F401  (registers the weights-only allowlist)
    final = work_dir / f'epoch_{MAX_EPOCHS}.pth'
    assert final.is_file()
    assert _last_checkpoint(work_dir) == str(final)
    state = torch.load(final, map_location='cpu', weights_only=True)
    assert state['meta']['epoch'] == MAX_EPOCHS
    assert state['meta']['iter'] == total_iters
    assert any(k.startswith('backbone.') for k in state['state_dict'])
    assert 'optimizer' in state and 'message_hub' in state
    for epoch in range(1, MAX_EPOCHS + 1):  # every checkpoint is complete and loadable
        meta = torch.load(work_dir / f'epoch_{epoch}.pth', map_location='cpu',
                          weights_only=True)['meta']
        assert (meta['epoch'], meta['iter']) == (epoch, epoch * iters_per_epoch)
    # atomic saving: checkpoints appear under their final names only when complete; the only
    # temporary file allowed is one of a save that the SIGKILL of run 1 interrupted
    tmp_files = [p.name for p in work_dir.iterdir() if p.name.endswith('.tmp')]
    assert all(f'.{proc.pid}.' in name for name in tmp_files), tmp_files
    assert sorted(p.name for p in work_dir.glob('*.pth')) == [
        f'epoch_{e}.pth' for e in range(1, MAX_EPOCHS + 1)]

    # ---- losses: one scalars.json per run, finite and in the same range ----
    scalar_files = sorted(glob.glob(str(work_dir / '2*' / 'vis_data' / 'scalars.json')))
    assert len(scalar_files) == 2 and scalar_files[0] == run_dirs_1[0]
    first = _scalars(osp.dirname(osp.dirname(scalar_files[0])))
    second = _scalars(osp.dirname(osp.dirname(scalar_files[1])))
    assert first and second
    # the resumed run logged exactly the iterations after the checkpoint, up to the end
    assert [r['iter'] for r in second] == list(range(start_iter + 1, total_iters + 1))
    assert first[0]['iter'] == 1
    losses1 = [r['loss'] for r in first]
    losses2 = [r['loss'] for r in second]
    assert all(math.isfinite(x) and x > 0 for x in losses1 + losses2), (losses1, losses2)
    mean2 = sum(losses2) / len(losses2)
    assert 0 < mean2 < 1.5 * losses1[0], (losses1, losses2)
    # the iterations both runs trained (if any) before the kill belong to run 1 only; the union
    # of both logs covers every iteration of an uninterrupted run
    covered = {r['iter'] for r in first if r['iter'] <= start_iter} | {r['iter'] for r in second}
    assert covered == set(range(1, total_iters + 1))

