"""Tests for rexnet_backbones.checkpoint: weights-only loading of mmengine checkpoints, the explicit
trust opt-in, clear errors, and atomic checkpoint saving."""
from __future__ import annotations

import copy
import errno
import io
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch
from torch import nn

from rexnet_backbones import checkpoint as rbc

ROOT = Path(__file__).resolve().parents[1]
ENV_VARS = (rbc.TRUST_ENV, rbc.TORCH_NO_WEIGHTS_ONLY_ENV, rbc.TORCH_WEIGHTS_ONLY_ENV)


@pytest.fixture(autouse=True)
def _no_trust_env(monkeypatch):
    """Every test starts without any opt-in; monkeypatch restores the env afterwards."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


class _Custom:
    """A class that is (deliberately) not on the weights-only allowlist."""

    def __init__(self, value: int) -> None:
        self.value = value


class _MakeDir:
    """Pickles as ``os.mkdir(path)``: the classic 'code runs on load' payload."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


def _sample_checkpoint() -> dict:
    return {'state_dict': {'w': torch.arange(256, dtype=torch.float32)},
            'meta': {'hist': np.linspace(0, 1, 64), 'score': np.float64(0.5), 'n': np.int64(3)}}


# ----------------------------------------------------------------------------- allowlist / safe_load

def test_allowlist_is_registered_and_idempotent():
    pytest.importorskip('mmengine')
    names = rbc.register_mmengine_safe_globals()
    for expected in ('mmengine.logging.history_buffer.HistoryBuffer', 'numpy.ndarray', 'numpy.dtype',
                     'numpy._core.multiarray._reconstruct', 'numpy._core.multiarray.scalar',
                     'numpy.core.multiarray._reconstruct', 'numpy.dtypes.Float64DType',
                     'numpy.dtypes.Int64DType'):
        assert expected in names
    n_globals = len(torch.serialization.get_safe_globals())
    assert rbc.register_mmengine_safe_globals() == names
    assert len(torch.serialization.get_safe_globals()) == n_globals
    # the real builtins.getattr is never allowlisted, only the HistoryBuffer-restricted stand-in
    assert getattr not in torch.serialization.get_safe_globals()


def test_numpy_meta_roundtrips_with_default_torch_load(tmp_path):
    path = tmp_path / 'np.pth'
    torch.save(_sample_checkpoint(), path)
    loaded = torch.load(path)  # torch's default: weights_only=True
    assert np.array_equal(loaded['meta']['hist'], np.linspace(0, 1, 64))
    assert loaded['meta']['score'] == 0.5 and isinstance(loaded['meta']['score'], np.float64)
    assert isinstance(rbc.safe_load(path)['meta']['n'], np.int64)


def test_numpy1_module_paths_are_accepted(tmp_path):
    """Checkpoints written under numpy 1.x reference ``numpy.core.multiarray``."""
    buf = io.BytesIO()
    torch.save({'a': np.arange(5), 's': np.float32(2.5)}, buf, _use_new_zipfile_serialization=False)
    data = buf.getvalue()
    assert b'numpy._core.multiarray' in data
    path = tmp_path / 'np1.pth'
    path.write_bytes(data.replace(b'numpy._core.multiarray', b'numpy.core.multiarray'))
    loaded = rbc.safe_load(path)
    assert np.array_equal(loaded['a'], np.arange(5)) and loaded['s'] == np.float32(2.5)


def test_non_allowlisted_class_gives_clear_error_and_trusted_loads(tmp_path):
    path = tmp_path / 'custom.pth'
    torch.save({'state_dict': {}, 'meta': {'obj': _Custom(7)}}, path)
    with pytest.raises(RuntimeError) as info:
        rbc.safe_load(path)
    msg = str(info.value)
    assert str(path) in msg
    assert f'{_Custom.__module__}._Custom' in msg
    assert '--trust-checkpoint' in msg and 'REXNET_TRUST_CHECKPOINTS=1' in msg
    assert 'executes pickled code' in msg
    assert rbc.safe_load(path, trusted=True)['meta']['obj'].value == 7


def test_env_opt_in_and_explicit_refusal(tmp_path, monkeypatch):
    path = tmp_path / 'custom.pth'
    torch.save({'obj': _Custom(3)}, path)
    monkeypatch.setenv(rbc.TRUST_ENV, '1')
    assert rbc.safe_load(path)['obj'].value == 3
    with pytest.raises(RuntimeError, match='trust-checkpoint'):
        rbc.safe_load(path, trusted=False)


def test_pickled_code_is_not_executed(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'x': _MakeDir(str(marker))}, path)
    with pytest.raises(RuntimeError, match=r'mkdir') as info:
        rbc.safe_load(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_getattr_stand_in_only_allows_history_buffer_statistics(tmp_path):
    HistoryBuffer = pytest.importorskip('mmengine.logging').HistoryBuffer

    class _Sneaky:
        def __reduce__(self):
            return getattr, (HistoryBuffer, 'register_statistics')

    path = tmp_path / 'sneaky.pth'
    torch.save({'x': _Sneaky()}, path)
    with pytest.raises(RuntimeError, match=r"getattr\(.*register_statistics"):
        rbc.safe_load(path)

    buffer = HistoryBuffer()
    for value in (1.0, 3.0):
        buffer.update(value)
    ok = tmp_path / 'buffer.pth'
    torch.save({'b': buffer}, ok)
    assert rbc.safe_load(ok)['b'].statistics('mean') == pytest.approx(2.0)


@pytest.mark.parametrize('keep', ['empty', 'head', 'half', 'all_but_one'])
@pytest.mark.parametrize('trusted', [False, True])
def test_truncated_file_gives_clear_error(tmp_path, keep, trusted):
    good = tmp_path / 'good.pth'
    torch.save(_sample_checkpoint(), good)
    data = good.read_bytes()
    size = {'empty': 0, 'head': 10, 'half': len(data) // 2, 'all_but_one': len(data) - 1}[keep]
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(data[:size])
    with pytest.raises(RuntimeError, match='truncated, corrupt') as info:
        rbc.safe_load(bad, trusted=trusted)
    assert str(bad) in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / 'nope.pth'
    with pytest.raises(FileNotFoundError) as info:
        rbc.safe_load(path)
    assert str(path) in str(info.value) and info.value.filename == str(path)


def test_enable_trusted_loading_reaches_mmengine(tmp_path, monkeypatch):
    _load_checkpoint = pytest.importorskip('mmengine.runner.checkpoint')._load_checkpoint

    path = tmp_path / 'custom.pth'
    torch.save({'state_dict': {}, 'obj': _Custom(5)}, path)
    with pytest.raises(pickle.UnpicklingError):  # mmengine's own load stays weights-only
        _load_checkpoint(str(path), map_location='cpu')

    monkeypatch.setenv(rbc.TORCH_WEIGHTS_ONLY_ENV, '1')
    with pytest.raises(RuntimeError, match=rbc.TORCH_WEIGHTS_ONLY_ENV):
        rbc.enable_trusted_loading()
    monkeypatch.delenv(rbc.TORCH_WEIGHTS_ONLY_ENV)

    rbc.enable_trusted_loading()
    assert os.environ[rbc.TORCH_NO_WEIGHTS_ONLY_ENV] == '1' and os.environ[rbc.TRUST_ENV] == '1'
    with pytest.warns(UserWarning, match='TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'):
        assert _load_checkpoint(str(path), map_location='cpu')['obj'].value == 5
    assert rbc.safe_load(path)['obj'].value == 5


def test_package_imports_without_mmengine(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        import numpy as np, torch

        class _BlockMMEngine:
            def find_spec(self, name, path=None, target=None):
                if name == 'mmengine' or name.startswith('mmengine.'):
                    raise ImportError('mmengine blocked for this test')
        sys.meta_path.insert(0, _BlockMMEngine())
        import rexnet_backbones
        from rexnet_backbones import checkpoint as mod
        assert 'mmengine' not in sys.modules
        names = mod.register_mmengine_safe_globals()
        assert 'numpy.ndarray' in names and not any('mmengine' in n for n in names), names
        torch.save({{'a': np.arange(3)}}, {str(tmp_path / 'a.pth')!r})
        assert mod.safe_load({str(tmp_path / 'a.pth')!r})['a'].tolist() == [0, 1, 2]
        print('OK')
    """)
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=120,
                          cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith('OK')


# ----------------------------------------------------------------------------- atomic saving
ATOMIC = dict(backend='atomic_local')


def test_import_replaces_no_mmengine_function():
    """``import rexnet_backbones`` registers; mmengine's functions stay its own."""
    pytest.importorskip('mmengine')
    import mmengine.runner as runner_pkg
    import mmengine.runner.checkpoint as ckpt_mod
    import mmengine.runner.runner as runner_mod
    from mmengine.fileio import get_file_backend
    from mmengine.registry import HOOKS

    import rexnet_backbones  # noqa: F401
    from rexnet_backbones.engine import AtomicCheckpointHook, AtomicLocalBackend

    assert ckpt_mod.save_checkpoint.__module__ == 'mmengine.runner.checkpoint'
    assert runner_mod.save_checkpoint is ckpt_mod.save_checkpoint is runner_pkg.save_checkpoint
    assert HOOKS.get('AtomicCheckpointHook') is AtomicCheckpointHook
    assert type(get_file_backend('/tmp/x.pth', backend_args=ATOMIC)) is AtomicLocalBackend
    assert AtomicCheckpointHook(interval=1).backend_args == ATOMIC
    assert AtomicCheckpointHook(interval=1, out_dir='s3://bucket/x').backend_args is None


def test_atomic_write_modes_and_stale_temp_files(tmp_path):
    old_umask = os.umask(0o022)
    try:
        new = tmp_path / 'new.pth'
        rbc.save_state_dict({'w': torch.ones(2)}, new)
        assert new.stat().st_mode & 0o777 == 0o644  # 0o666 & ~umask, as open() gives
        kept = tmp_path / 'kept.pth'
        kept.write_bytes(b'x')
        kept.chmod(0o640)
        rbc.save_state_dict({'w': torch.ones(2)}, kept)
        assert kept.stat().st_mode & 0o777 == 0o640  # a replaced file keeps its mode
    finally:
        os.umask(old_umask)
    with pytest.raises(IsADirectoryError, match='it is a directory'):
        rbc.atomic_write(tmp_path, b'x')


# Crashes are injected where bytes reach the disk (each binary-write ``open``), not inside
# ``torch.save``: mmengine serialises to memory first, so only a crash while the file is being
# written can leave a half-written checkpoint behind.
class _FaultyFile:
    """Binary file that accepts ``budget`` bytes, then writes part of the next chunk and fails."""

    def __init__(self, f, budget: int, action: str) -> None:
        self._f, self._room, self._action = f, budget, action

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self._room:
            self._f.write(data[: self._room])
            self._f.flush()
            os.fsync(self._f.fileno())
            if self._action == 'kill':
                os.kill(os.getpid(), signal.SIGKILL)
            raise OSError(errno.ENOSPC, 'No space left on device (simulated)')
        self._room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name: str):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self._f.close()


def _faulty_open_factory(real_open, budget: int, action: str, nth: int):
    """An ``open`` whose ``nth`` binary-write file runs out of space after ``budget`` bytes."""
    count = [0]

    def faulty_open(file, mode='r', *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if 'w' in mode and 'b' in mode:
            count[0] += 1
            if count[0] == nth:
                return _FaultyFile(f, budget, action)
        return f

    return faulty_open


def _fail_binary_writes(monkeypatch, *, budget: int = 1000, nth: int = 1) -> None:
    """Patch builtins.open and io.open (used by os.fdopen) with :func:`_faulty_open_factory`."""
    import builtins

    faulty_open = _faulty_open_factory(io.open, budget, 'raise', nth)
    monkeypatch.setattr(builtins, 'open', faulty_open)
    monkeypatch.setattr(io, 'open', faulty_open)


def _assert_simulated_failure(excinfo) -> None:
    """torch's zip writer may re-raise the disk error as RuntimeError while closing the archive."""
    chain, exc = [], excinfo.value
    while exc is not None:
        chain.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    assert any('simulated' in msg for msg in chain), chain


def test_crash_while_writing_keeps_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint = pytest.importorskip('mmengine.runner.checkpoint').save_checkpoint

    target = tmp_path / 'ckpt' / 'latest.pth'
    save_checkpoint({'state_dict': {'w': torch.ones(4096)}, 'meta': {'iter': 1}}, str(target),
                    backend_args=ATOMIC)
    before = target.read_bytes()
    assert rbc.safe_load(target)['meta']['iter'] == 1

    with monkeypatch.context() as mp:
        _fail_binary_writes(mp)
        with pytest.raises((OSError, RuntimeError)) as excinfo:
            save_checkpoint({'state_dict': {'w': torch.zeros(4096)}, 'meta': {'iter': 2}}, str(target),
                            backend_args=ATOMIC)
    _assert_simulated_failure(excinfo)
    assert target.read_bytes() == before
    assert rbc.safe_load(target)['meta']['iter'] == 1
    assert sorted(p.name for p in target.parent.iterdir()) == ['latest.pth']  # temp file cleaned up


@pytest.mark.skipif(not hasattr(signal, 'SIGKILL'), reason='needs SIGKILL')
def test_process_killed_mid_write_keeps_previous_checkpoint(tmp_path):
    save_checkpoint = pytest.importorskip('mmengine.runner.checkpoint').save_checkpoint

    target = tmp_path / 'epoch_1.pth'
    save_checkpoint({'state_dict': {'w': torch.ones(4096)}, 'meta': {'epoch': 1}}, str(target),
                    backend_args=ATOMIC)
    before = target.read_bytes()
    script = textwrap.dedent(f"""
        import builtins, io
        import torch
        from test_checkpoint import _faulty_open_factory  # also imports rexnet_backbones (the backend)
        from mmengine.runner.checkpoint import save_checkpoint
        builtins.open = io.open = _faulty_open_factory(io.open, 1000, 'kill', 1)
        save_checkpoint({{'state_dict': {{'w': torch.zeros(4096)}}, 'meta': {{'epoch': 2}}}},
                        {str(target)!r}, backend_args=dict(backend='atomic_local'))
    """)
    tests_dir = str(ROOT / 'tests')  # test_checkpoint is imported by the child process
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [tests_dir, os.environ.get('PYTHONPATH')])))
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=120,
                          cwd=str(ROOT), env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert target.read_bytes() == before
    assert rbc.safe_load(target)['meta']['epoch'] == 1
    leftovers = [p for p in tmp_path.iterdir() if p.name != 'epoch_1.pth']
    assert len(leftovers) == 1 and leftovers[0].name.startswith('.rexnet-tmp.')
    assert leftovers[0].name.endswith('.epoch_1.pth') and leftovers[0].stat().st_size == 1000
    # the next save into that folder removes the dead process' temporary file
    save_checkpoint({'state_dict': {'w': torch.ones(8)}, 'meta': {'epoch': 2}}, str(tmp_path / 'epoch_2.pth'),
                    backend_args=ATOMIC)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['epoch_1.pth', 'epoch_2.pth']


# ----------------------------------------------------------------------------- real mmengine Runner

DATASET_META = {'classes': ('person', 'bicycle', 'car'),
                'palette': [(220, 20, 60), (119, 11, 32), (0, 0, 142)],
                'seg_map_suffix': '.png', 'reduce_zero_label': False}


def _runner_parts():
    from mmengine.evaluator import BaseMetric
    from mmengine.hooks import Hook
    from mmengine.model import BaseModel
    from torch.utils.data import Dataset

    class ToyDataset(Dataset):
        metainfo = DATASET_META

        def __len__(self) -> int:
            return 8

        def __getitem__(self, i: int) -> dict:
            g = torch.Generator().manual_seed(i)
            return {'x': torch.randn(4, generator=g), 'y': torch.randn(1, generator=g)}

    class ToyModel(BaseModel):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 1)

        def forward(self, x, y, mode='tensor'):
            out = self.fc(x)
            if mode == 'loss':
                return {'loss': ((out - y) ** 2).mean()}
            return [{'pred': p, 'y': t} for p, t in zip(out, y)]

    class MSEMetric(BaseMetric):
        def process(self, data_batch, data_samples) -> None:
            self.results += [float(((d['pred'] - d['y']) ** 2).mean()) for d in data_samples]

        def compute_metrics(self, results) -> dict:  # numpy scalars end up in message_hub
            return {'mse': np.float64(np.mean(results)), 'count': np.int64(len(results)),
                    'half': np.float32(0.5)}

    class RecordHook(Hook):
        """Captures what the runner holds right after load_or_resume()."""

        def before_train(self, runner) -> None:
            self.iter, self.epoch = runner.iter, runner.epoch
            self.state_dict = {k: v.clone() for k, v in runner.model.state_dict().items()}
            # deep copies: optimizer state tensors are updated in place by later steps
            self.optimizer = copy.deepcopy(runner.optim_wrapper.state_dict())
            self.schedulers = copy.deepcopy([s.state_dict() for s in runner.param_schedulers])

    return ToyDataset, ToyModel, MSEMetric, RecordHook


def _make_runner(work_dir: Path, name: str, *, by_epoch: bool, max_len: int, interval: int,
                 with_val: bool, model=None, hooks=(), resume=False, load_from=None,
                 ckpt_hook: Optional[dict] = None):
    from mmengine.runner import Runner

    ToyDataset, ToyModel, MSEMetric, _ = _runner_parts()
    loader = dict(dataset=ToyDataset(), sampler=dict(type='DefaultSampler', shuffle=False),
                  batch_size=4, collate_fn=dict(type='default_collate'))
    train_cfg = (dict(by_epoch=True, max_epochs=max_len, val_interval=1) if by_epoch
                 else dict(by_epoch=False, max_iters=max_len, val_interval=max_len))
    ckpt_hook = dict(dict(type='AtomicCheckpointHook'), **(ckpt_hook or {}), interval=interval,
                     by_epoch=by_epoch)
    val = {}
    if with_val:
        ckpt_hook.update(save_best='mse', rule='less')
        val = dict(val_dataloader=loader, val_evaluator=[MSEMetric()], val_cfg=dict())
    return Runner(
        model=model if model is not None else ToyModel(), work_dir=str(work_dir), experiment_name=name,
        train_dataloader=loader, train_cfg=train_cfg, **val,
        optim_wrapper=dict(type='OptimWrapper', clip_grad=dict(max_norm=10.0),
                           optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        param_scheduler=[dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3),
                         dict(type='MultiStepLR', milestones=[1], gamma=0.5, by_epoch=by_epoch)],
        default_hooks=dict(checkpoint=ckpt_hook, logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=list(hooks), resume=resume, load_from=load_from, default_scope='mmengine',
        randomness=dict(seed=0), log_level='WARNING')


def _zeroed_model():
    model = _runner_parts()[1]()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model


def _assert_resumed_state(record, saved: dict) -> None:
    assert record.state_dict.keys() == saved['state_dict'].keys()
    for key, value in saved['state_dict'].items():
        assert torch.equal(record.state_dict[key], value), key
    assert any(v.abs().sum() > 0 for v in saved['state_dict'].values())  # not the zero init
    saved_state, resumed_state = saved['optimizer']['state'], record.optimizer['state']
    assert saved_state.keys() == resumed_state.keys() and saved_state
    for idx in saved_state:
        assert torch.equal(resumed_state[idx]['momentum_buffer'], saved_state[idx]['momentum_buffer'])
    assert record.optimizer['param_groups'][0]['lr'] == saved['optimizer']['param_groups'][0]['lr']
    assert [s['last_step'] for s in record.schedulers] == [s['last_step'] for s in saved['param_schedulers']]


@pytest.fixture
def torch_load_spy(monkeypatch):
    """Records the keyword arguments of every torch.load call (mmengine included)."""
    calls: list[dict] = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(dict(kwargs))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', spy)
    return calls


def test_iter_runner_crash_while_saving_then_resume(tmp_path, monkeypatch, torch_load_spy):
    pytest.importorskip('mmengine')
    work = tmp_path / 'work'
    # run A: saves iter_2, then the disk fills up half-way through writing iter_4
    runner_a = _make_runner(work, f'{tmp_path.name}_a', by_epoch=False, max_len=4, interval=2,
                            with_val=False)
    with monkeypatch.context() as mp:
        # binary writes: iter_2.pth, last_checkpoint, then iter_4.pth fails half-way
        _fail_binary_writes(mp, nth=3)
        with pytest.raises((OSError, RuntimeError)) as excinfo:
            runner_a.train()
    _assert_simulated_failure(excinfo)

    assert not (work / 'iter_4.pth').exists()
    assert not list(work.glob('.rexnet-tmp.*'))
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_2.pth')
    saved = torch.load(work / 'iter_2.pth')  # torch default, weights_only=True
    assert saved['meta']['iter'] == 2 and saved['meta']['dataset_meta'] == DATASET_META
    assert type(saved['message_hub']['log_scalars']['train/loss']).__name__ == 'HistoryBuffer'

    # run B: a new Runner auto-resumes from last_checkpoint and finishes
    torch_load_spy.clear()
    record = _runner_parts()[3]()
    runner_b = _make_runner(work, f'{tmp_path.name}_b', by_epoch=False, max_len=6, interval=2,
                            with_val=False, model=_zeroed_model(), hooks=[record], resume=True)
    runner_b.train()
    assert torch_load_spy and all(c.get('weights_only', True) is True for c in torch_load_spy)
    assert record.iter == 2
    _assert_resumed_state(record, saved)
    assert runner_b.iter == 6
    final = rbc.safe_load(work / 'iter_6.pth')
    assert final['meta']['iter'] == 6
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_6.pth')


def test_epoch_runner_with_val_resume_via_load_from(tmp_path, torch_load_spy):
    pytest.importorskip('mmengine')
    work = tmp_path / 'work'
    runner_a = _make_runner(work, f'{tmp_path.name}_a', by_epoch=True, max_len=2, interval=1,
                            with_val=True)
    runner_a.train()
    ckpt_path = work / 'epoch_2.pth'
    saved = torch.load(ckpt_path)
    assert saved['meta']['epoch'] == 2 and saved['meta']['iter'] == 4
    assert saved['meta']['dataset_meta'] == DATASET_META
    runtime_info = saved['message_hub']['runtime_info']
    assert isinstance(runtime_info['best_score'], np.floating)
    assert saved['message_hub']['log_scalars']['val/count'].current() == 8
    assert list(work.glob('best_mse_epoch_*.pth'))

    torch_load_spy.clear()
    record = _runner_parts()[3]()
    runner_b = _make_runner(work, f'{tmp_path.name}_b', by_epoch=True, max_len=3, interval=1,
                            with_val=True, model=_zeroed_model(), hooks=[record], resume=True,
                            load_from=str(ckpt_path))
    runner_b.train()
    assert torch_load_spy and all(c.get('weights_only', True) is True for c in torch_load_spy)
    assert (record.epoch, record.iter) == (2, 4)
    _assert_resumed_state(record, saved)
    assert (runner_b.epoch, runner_b.iter) == (3, 6)
    assert rbc.safe_load(work / 'epoch_3.pth')['meta']['epoch'] == 3


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / 'notes.pth'
    path.write_text('these are not weights\n')
    with pytest.raises(RuntimeError, match=r"notes\.pth': it is not a PyTorch checkpoint"):
        rbc.safe_load(path)


def test_atomic_hook_overrides_only_public_methods():
    from mmengine.hooks import CheckpointHook

    from rexnet_backbones.engine import AtomicCheckpointHook
    own = set(vars(AtomicCheckpointHook))
    assert {'after_train_epoch', 'after_train_iter', 'after_val_epoch'} <= own
    assert not [n for n in own if n.startswith('_') and not n.startswith('__') and hasattr(CheckpointHook, n)]


def _record_plain_writes(monkeypatch, name: str) -> list:
    """Paths ending in ``name`` that ``open()`` opens for writing directly (not through a temp file)."""
    import builtins
    real_open, seen = builtins.open, []

    def spy(file, mode='r', *args, **kwargs):
        if str(file).endswith(name) and any(c in mode for c in 'wa'):
            seen.append(str(file))
        return real_open(file, mode, *args, **kwargs)
    monkeypatch.setattr(builtins, 'open', spy)
    return seen


@pytest.mark.parametrize('by_epoch', [True, False])
def test_atomic_hook_saves_what_checkpoint_hook_saves(tmp_path, monkeypatch, by_epoch):
    """Same files, ``last_checkpoint`` and runtime info as mmengine's own CheckpointHook, with
    ``max_keep_ckpts`` and ``save_best``. By epoch (a val run each epoch, saves every 2): the new best
    score after epoch 3 saves the last checkpoint again as epoch 3 (mmengine's behaviour), and
    epoch 4 then drops epoch 2."""
    results = {}
    for hook in ('CheckpointHook', 'AtomicCheckpointHook'):
        work = tmp_path / hook
        runner = _make_runner(work, f'{tmp_path.name}_{hook}_{by_epoch}', by_epoch=by_epoch, max_len=4,
                              interval=2, with_val=True, model=_zeroed_model(),
                              ckpt_hook=dict(type=hook, max_keep_ckpts=2))
        plain_writes = _record_plain_writes(monkeypatch, 'last_checkpoint')
        runner.train()
        monkeypatch.undo()
        assert (len(plain_writes) > 0) == (hook == 'CheckpointHook')  # ours: temp file + rename only
        files = sorted(p.name for p in work.glob('*.pth'))
        last = Path((work / 'last_checkpoint').read_text()).name
        info = rbc.safe_load(work / last)['message_hub']['runtime_info']
        results[hook] = (files, last, Path(info['best_ckpt']).name, info['keep_ckpt_ids'])
    assert results['AtomicCheckpointHook'] == results['CheckpointHook']
    files, last, _, keep = results['CheckpointHook']
    step = 'epoch' if by_epoch else 'iter'
    assert last == f'{step}_4.pth' and keep == ([3, 4] if by_epoch else [2, 4])
    assert [f for f in files if not f.startswith('best_')] == [f'{step}_{i}.pth' for i in keep]


def test_dump_predictions_drops_seg_logits():
    from rexnet_backbones.engine.runner import DumpPredictions

    dump = DumpPredictions(out_file_path='unused.pkl')
    sample = {'seg_logits': torch.zeros(2, 4, 4), 'pred_sem_seg': torch.ones(4, 4), 'img_path': 'a.png'}
    dump.process({}, [sample])
    assert list(dump.results[0]) == ['pred_sem_seg', 'img_path']
    assert torch.equal(dump.results[0]['pred_sem_seg'], torch.ones(4, 4))
    assert 'seg_logits' in sample  # the sample other metrics see is left as it is
