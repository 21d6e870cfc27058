"""RegNet's method, trained: sample models per design space at a FLOP regime, train each, record.

One job is one model ``(space, index)``; its record (one JSON line) holds the settings hash, the
architecture parameters, FLOPs (multiply-adds, one image), activations (conv and linear outputs),
parameters, top-1 error on the validation split (``None`` and ``status='diverged'`` when the loss
became non-finite), and rank statistics of every block (and expand layer) at initialisation and
after training, centred and not (:func:`rank_stats`): the older mean over all layers of rank /
min(rows, C) at ``max_rows`` rows, and, per kind of layer (block outputs, expand layers), the
width-free statistics of :func:`.estimators.measure_fixed` (``rows_per_channel * C`` rows, no cap;
ratio and ratio to white noise).

Besides the main study (:func:`run_study`), :func:`lr_sweep_settings` and :func:`noise_settings` make
the settings of a per-space learning-rate sweep and of per-model seed-noise runs (the same models
retrained with other training seeds: ``train_seed``), and :func:`budget` estimates their cost.

Scale: ``shard=(I, N)`` (1-based) runs the jobs ``k`` with ``k % N == I - 1`` of the fixed job list (disjoint,
deterministic); every finished model is appended to the output as ONE ``os.write`` of its whole line
to an ``O_APPEND`` file, so a killed run leaves whole lines and a rerun skips the models already
there. :mod:`.trained_report` merges shard files (refusing files of different settings).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..cli import take_shard
from ..errors import InvalidInputError, ToolError
from .estimators import ROWS_PER_CHANNEL, measure_fixed, rank_estimates, sample_rows
from .spaces import DEFAULT_SPACES, DESIGNS, PAIRED, TRAINED_SPACES, build_space_model, count_acts, sample_model

__all__ = ['StudySettings', 'OPTIMIZERS', 'settings_hash', 'study_jobs', 'shard_jobs', 'load_data', 'train_model',
           'rank_stats', 'run_model', 'append_record', 'read_records', 'run_study', 'ROW_FACTOR', 'RANK_ESTIMATORS',
           'lr_sweep_settings', 'noise_settings', 'budget', 'LAYER_KINDS']

RANK_ESTIMATORS = ('nuclear', 'effective', 'stable')
OPTIMIZERS = ('adamw', 'sgd')
#: a layer with fewer rows than ROW_FACTOR x channels is flagged as row-capped
ROW_FACTOR = 4
#: the kinds of layer :func:`rank_stats` reports separately
LAYER_KINDS = ('block', 'expand')


@dataclass
class StudySettings:
    """Everything that decides a model's record (its hash is stored in every line)."""
    spaces: Tuple[str, ...] = DEFAULT_SPACES
    num_models: int = 100
    flops: Tuple[float, float] = (8e6, 16e6)
    input_size: int = 32
    stem_stride: int = 1
    epochs: int = 1
    batch_size: int = 32
    optimizer: str = 'adamw'
    lr: float = 6e-3
    weight_decay: float = 0.05
    zero_init_last: bool = False
    num_train: int = 4000
    num_val: int = 1000
    data: str = 'generated'
    rank_images: int = 256
    max_rows: int = 1024
    estimators: Tuple[str, ...] = RANK_ESTIMATORS
    max_tries: int = 5000
    seed: int = 0
    design: str = 'matched'
    rows_per_channel: int = ROWS_PER_CHANNEL
    train_seed: int = 0  # 0: the model's own seed (initial weights and batches); k > 0: another training run
    space_lrs: Tuple[Tuple[str, float], ...] = ()  # per-space learning rates (from a sweep); others use lr

    def lr_of(self, space: str) -> float:
        """The learning rate ``space`` trains with: its entry of ``space_lrs``, else ``lr``."""
        return float(dict(self.space_lrs).get(space, self.lr))

    def check(self) -> None:
        bad = [s for s in self.spaces if s not in TRAINED_SPACES]
        if bad:
            raise InvalidInputError(f'unknown design space(s) {bad}; choose from {", ".join(TRAINED_SPACES)}')
        for name in ('num_models', 'epochs', 'batch_size', 'num_train', 'num_val', 'rank_images', 'max_tries'):
            if getattr(self, name) < 1:
                raise InvalidInputError(f'--{name.replace("_", "-")} must be >= 1, got {getattr(self, name)}')
        if not 0 < self.flops[0] <= self.flops[1]:
            raise InvalidInputError(f'--flops LO HI needs 0 < LO <= HI, got {self.flops}')
        if self.optimizer not in OPTIMIZERS:
            raise InvalidInputError(f'--optimizer must be one of {", ".join(OPTIMIZERS)}, got {self.optimizer!r}')
        if self.stem_stride not in (1, 2):
            raise InvalidInputError(f'--stem-stride must be 1 or 2, got {self.stem_stride}')
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InvalidInputError(f'--lr must be a positive number, got {self.lr}')
        if self.design not in DESIGNS:
            raise InvalidInputError(f'--design must be one of {", ".join(DESIGNS)}, got {self.design!r}')
        bad_lr = [f'{k}={v}' for k, v in self.space_lrs if k not in self.spaces or not (v > 0 and math.isfinite(v))]
        if bad_lr:
            raise InvalidInputError(f'--space-lr {" ".join(bad_lr)}: each needs a space of this study and a '
                                    'positive rate (SPACE=LR)')
        if self.rows_per_channel < 1 or self.train_seed < 0:
            raise InvalidInputError('--rows-per-channel must be >= 1 and --train-seed >= 0, got '
                                    f'{self.rows_per_channel} and {self.train_seed}')


def settings_hash(s: StudySettings) -> str:
    """12 hex digits of the settings (spaces in order, every number)."""
    return hashlib.sha256(json.dumps(asdict(s), sort_keys=True).encode()).hexdigest()[:12]


def lr_sweep_settings(s: StudySettings, lrs: Sequence[float], num_models: int) -> List[StudySettings]:
    """One study per learning rate: ``s`` with ``lr`` and the first ``num_models`` models per space (the
    same models at every rate; run each into its own file and compare the median errors per space)."""
    if len(lrs) < 2 or any(not (v > 0 and math.isfinite(v)) for v in lrs):
        raise InvalidInputError(f'--lrs needs two or more positive rates, got {list(lrs)}')
    if num_models < 1:
        raise InvalidInputError(f'--sweep-models must be >= 1, got {num_models}')
    return [replace(s, lr=float(v), num_models=num_models, space_lrs=()) for v in lrs]


def noise_settings(s: StudySettings, num_models: int, seeds: int) -> List[StudySettings]:
    """Per-model seed noise: the first ``num_models`` models per space of ``s`` retrained with
    ``train_seed`` 1..``seeds`` (other initial weights and batch order, the same architectures); with
    the main run (train_seed 0) each model then has ``seeds + 1`` errors."""
    if num_models < 1 or seeds < 1:
        raise InvalidInputError(f'--noise-models and --noise-seeds must be >= 1, got {num_models} and {seeds}')
    return [replace(s, num_models=num_models, train_seed=k) for k in range(1, seeds + 1)]


def budget(runs: Sequence[StudySettings], timing: Dict[str, Tuple[float, float]], cores: int = 1,
           reference_images: int = 4000) -> Dict[str, Any]:
    """Estimated cost of ``runs``: per model of each space, ``epochs x (num_train / reference_images) x
    train + rest`` with ``timing[space] = (training seconds of one epoch at reference_images, the
    rest)`` (:func:`.trained_stats.seconds_per_model_epoch` of an earlier study), divided over ``cores``
    parallel shards."""
    rows, total = [], 0.0
    costliest = max(timing.values(), key=lambda t: t[0] + t[1])
    for s in runs:
        secs = 0.0
        for sp in s.spaces:
            train, rest = timing.get(sp, timing.get(PAIRED.get(sp, sp), costliest))
            secs += s.num_models * (s.epochs * s.num_train / reference_images * train + rest)
        total += secs
        rows.append(dict(lr=s.lr, num_models=s.num_models, epochs=s.epochs, num_train=s.num_train,
                         train_seed=s.train_seed, models=s.num_models * len(s.spaces), cpu_hours=secs / 3600))
    return dict(runs=rows, cpu_hours=total / 3600, wall_hours=total / 3600 / max(1, cores), cores=cores)


def study_jobs(s: StudySettings) -> List[Tuple[str, int]]:
    """Every ``(space, index)``, interleaved over spaces (a partial run covers every space evenly)."""
    return [(sp, i) for i in range(s.num_models) for sp in s.spaces]


def shard_jobs(jobs: Sequence[Tuple[str, int]], shard: Tuple[int, int]) -> List[Tuple[str, int]]:
    """Shard ``I`` of ``N`` (1-based, ``shard=(I, N)``) of ``jobs``: every N-th job from job ``I - 1``."""
    return take_shard(jobs, *shard)


def load_data(s: StudySettings) -> Dict[str, Any]:
    """Train and validation tensors (uint8 images) of the generated set or the ``--data`` folder."""
    from ..data.classification import CLS_CLASSES, load_image_folder, make_shape_classification
    if s.data == 'generated':
        train = make_shape_classification(s.num_train, 'train', s.input_size, s.seed)
        val = make_shape_classification(s.num_val, 'val', s.input_size, s.seed)
        classes = list(CLS_CLASSES)
    else:
        train, val, classes = load_image_folder(s.data, s.input_size, max(s.num_train, s.num_val))
        train, val = (train[0][:s.num_train], train[1][:s.num_train]), (val[0][:s.num_val], val[1][:s.num_val])
    x = train[0].float()
    mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3)).clamp_min(1.0)
    norm = lambda t: (t.float() - mean[:, None, None]) / std[:, None, None]  # noqa: E731
    return dict(train=(norm(train[0]), train[1]), val=(norm(val[0]), val[1]), classes=classes)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 error (%) in eval mode."""
    model.eval()
    wrong = 0
    with torch.no_grad():
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            wrong += int((model(xb).argmax(1) != yb).sum())
    return 100.0 * wrong / len(y)


# A plain loop, not mmengine's Runner: hundreds of tiny models train for seconds each, and building a
# Runner (config, hooks, logger, visualizer, work dir) per model would cost as much as the training.
def train_model(model: nn.Module, data: Dict[str, Any], epochs: int, batch_size: int, lr: float,
                weight_decay: float, seed: int, optimizer: str = 'adamw') -> Dict[str, Any]:
    """AdamW or SGD (momentum 0.9, Nesterov), linear warm-up over the first epoch's first 10% then
    cosine to 0, random horizontal flips; seeded batch order. Stops at the first non-finite loss
    (``diverged``)."""
    x, y = data['train']
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(y) / batch_size)
    total = epochs * steps_per_epoch
    warm = max(1, steps_per_epoch // 10)
    if optimizer == 'sgd':
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True,
                                                     weight_decay=weight_decay)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.to(memory_format=torch.channels_last)  # ~1.5x faster training on a CPU, every space
    model.train()
    step, losses = 0, []
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        flips = (torch.rand(len(y), generator=gen) < 0.5).to(x.device)
        losses = []
        for idx in order.to(x.device).split(batch_size):
            xb = torch.where(flips[idx, None, None, None], x[idx].flip(-1), x[idx])
            xb = xb.contiguous(memory_format=torch.channels_last)
            for g in opt.param_groups:
                g['lr'] = lr * (step + 1) / warm if step < warm else \
                    0.5 * lr * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
            loss = F.cross_entropy(model(xb), y[idx])
            if not torch.isfinite(loss):
                return dict(status='diverged', train_loss=None, diverged_at_step=step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
    return dict(status='ok', train_loss=sum(losses) / len(losses))


def rank_stats(model: nn.Module, images: torch.Tensor, estimators: Sequence[str], max_rows: int,
               bn_batch_stats: bool, seed: int = 0, rows_per_channel: Optional[int] = None) -> Dict[str, Any]:
    """Rank of every block output and expand layer (:func:`.network.find_layers`) on ``images``.

    Always: per centring (``centred``/``uncentred``) and estimator, the mean and minimum over all the
    layers of ``rank / min(rows, channels)`` at ``max_rows`` sampled rows (the older statistic, which
    falls with width); ``capped``: layers with rows < ROW_FACTOR x channels. With
    ``rows_per_channel``: also ``by_kind`` -> ``block``/``expand`` -> centring -> ``ratio``/``null`` ->
    estimator -> mean/min over that kind's layers, from ``rows_per_channel * C`` rows per layer
    (:func:`.estimators.measure_fixed`), with ``n`` (layers) and ``short`` (layers with fewer rows).
    """
    from .estimators import feature_matrix
    from .network import batch_norm_stats, find_layers

    feats: Dict[str, torch.Tensor] = {}
    fixed: Dict[str, Dict[str, Any]] = {}
    kinds: Dict[str, str] = {}
    hooks = []
    for k, (name, kind) in enumerate(find_layers(model, expand=True)):
        kinds[name] = kind

        def hook(_m, _i, out, name=name, k=k):
            out = out[0] if isinstance(out, (tuple, list)) else out
            feats[name] = feature_matrix(out, max_rows, torch.Generator().manual_seed(seed + k))
            if rows_per_channel:
                fixed[name] = measure_fixed(sample_rows(out, rows_per_channel, torch.Generator().manual_seed(seed + k)),
                                            estimators, rows_per_channel=rows_per_channel)
        hooks.append(model.get_submodule(name).register_forward_hook(hook))
    model.eval()
    try:
        with torch.no_grad(), batch_norm_stats(model, bn_batch_stats):
            model(images)
    finally:
        for h in hooks:
            h.remove()
    out: Dict[str, Any] = dict(num_layers=len(feats), capped=sum(a.shape[0] < ROW_FACTOR * a.shape[1]
                                                                    for a in feats.values()))
    for centring, center in (('centred', True), ('uncentred', False)):
        per_layer = []
        for a in feats.values():
            est = rank_estimates(a, estimators, center=center)
            per_layer.append({e: v / min(a.shape) for e, v in est.items()})
        out[centring] = {e: dict(mean=sum(r[e] for r in per_layer) / len(per_layer),
                                 min=min(r[e] for r in per_layer)) for e in estimators}
    if rows_per_channel:
        out['rows_per_channel'] = rows_per_channel
        out['by_kind'] = {}
        for kind in LAYER_KINDS:
            ms = [m for n, m in fixed.items() if kinds[n] == kind]
            if not ms:
                continue
            entry: Dict[str, Any] = dict(n=len(ms), short=sum(bool(m['short']) for m in ms))
            for centring in ('centred', 'uncentred'):
                entry[centring] = {norm: {e: dict(mean=sum(m[centring][norm][e] for m in ms) / len(ms),
                                                  min=min(m[centring][norm][e] for m in ms)) for e in estimators}
                                   for norm in ('ratio', 'null')}
            out['by_kind'][kind] = entry
    return out


def _model_seed(s: StudySettings, space: str, index: int) -> int:
    base = PAIRED.get(space, space)  # paired spaces: the very same initial weights and batches
    run = f':{s.train_seed}' if getattr(s, 'train_seed', 0) else ''  # 0: the main run's seed, as before
    return int(hashlib.sha256(f'{base}:{s.seed}:{index}{run}'.encode()).hexdigest()[:8], 16)


def run_model(s: StudySettings, space: str, index: int, data: Dict[str, Any], device: str = 'cpu') -> Dict[str, Any]:
    """Sample, measure at init, train, evaluate and measure again one model (on ``device``, where
    ``data`` is); its record."""
    start, cpu = time.time(), time.process_time()
    size = (s.input_size, s.input_size)
    num_classes = len(data['classes'])
    sample = sample_model(space, index, s.flops, size, s.seed, s.max_tries, num_classes, s.stem_stride, s.design)
    seed = _model_seed(s, space, index)
    torch.manual_seed(seed)
    model = build_space_model(space, sample['params'], num_classes, s.stem_stride, s.zero_init_last, s.design)
    rank_images = data['val'][0][:s.rank_images]
    rec: Dict[str, Any] = dict(
        settings_hash=settings_hash(s), settings=asdict(s), space=space, index=index, arch=sample['params'],
        flops=sample['flops'], acts=count_acts(model, size), num_params=sum(p.numel() for p in model.parameters()), tries=sample['tries'])
    model.to(device)
    rank = dict(init=rank_stats(model, rank_images, s.estimators, s.max_rows, True, s.seed, s.rows_per_channel))
    t0 = time.time()
    rec['lr'] = s.lr_of(space)
    rec.update(train_model(model, data, s.epochs, s.batch_size, s.lr_of(space), s.weight_decay, seed, s.optimizer))
    rec['train_seconds'] = round(time.time() - t0, 2)
    if rec['status'] == 'ok':
        rec['error'] = evaluate(model, *data['val'])
        rank['trained'] = rank_stats(model, rank_images, s.estimators, s.max_rows, False, s.seed, s.rows_per_channel)
    else:
        rec['error'] = None
    rec['rank'] = rank
    rec['seconds'] = round(time.time() - start, 2)
    rec['cpu_seconds'] = round(time.process_time() - cpu, 2)  # what a quiet core would take (1 thread)
    return rec


def append_record(path: str, record: Dict[str, Any]) -> None:
    """Append ``record`` as one line with a single ``os.write`` to an ``O_APPEND`` file."""
    line = (json.dumps(record, sort_keys=True) + '\n').encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.write(fd, line) != len(line):
            raise OSError(f'short write to {path}')
    finally:
        os.close(fd)


def _drop_cut_line(path: str) -> None:
    """Truncate a last line without newline (a write cut by a kill) so the next append starts a line."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    with open(path, 'rb+') as f:
        data = f.read()
        if not data.endswith(b'\n'):
            f.truncate(data.rfind(b'\n') + 1)


def read_records(path: str) -> List[Dict[str, Any]]:
    """The whole lines of a record file (a last line without newline, a write cut by a kill, is left out)."""
    if not os.path.exists(path):
        return []
    with open(path, encoding='utf-8') as f:
        text = f.read()
    out = []
    for k, line in enumerate(text.split('\n')[:-1]):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                raise ToolError(f'{path}:{k + 1} is not a JSON record; it is not a study output file') from None
    return out


def _on_device(data: Dict[str, Any], device: str) -> Dict[str, Any]:
    """``data`` with its train and validation tensors on ``device`` (the loop and the rank pass run there)."""
    return dict(data, **{k: tuple(t.to(device) for t in data[k]) for k in ('train', 'val')})


def run_study(s: StudySettings, out: str, shard: Tuple[int, int] = (1, 1), limit: Optional[int] = None,
              progress: bool = True, device: str = 'cpu') -> List[Dict[str, Any]]:
    """Run this shard's jobs not yet in ``out`` (at most ``limit`` of them) on ``device`` (not part of the
    settings: a GPU's round-off differs from a CPU's, the study's choices do not); returns the new records."""
    s.check()
    h = settings_hash(s)
    done = read_records(out)
    other = {r.get('settings_hash') for r in done} - {h}
    if other:
        raise ToolError(f'{out} holds models of other study settings (hash {sorted(other)[0]}, these are {h}); '
                        'give a new --out file or the same settings as that run')
    finished = {(r['space'], r['index']) for r in done}
    todo = [j for j in shard_jobs(study_jobs(s), shard) if j not in finished][:limit]
    data = _on_device(load_data(s), device) if todo else None
    if progress:
        print(f'shard {shard[0]}/{shard[1]}: {len(todo)} models to train, {len(finished)} already in {out}',
              file=sys.stderr, flush=True)
    _drop_cut_line(out)
    new = []
    for k, (space, index) in enumerate(todo):
        rec = run_model(s, space, index, data, device)
        append_record(out, rec)
        new.append(rec)
        if progress:
            err = 'diverged' if rec['error'] is None else f"{rec['error']:.1f}% error"
            print(f"[{k + 1}/{len(todo)}] {space} #{index}: {rec['flops'] / 1e6:.2f} MFLOPs, {err}, "
                  f"{rec['seconds']:.1f}s", file=sys.stderr, flush=True)
    return new

