"""Training-step benchmark (``train_step=True``, ``tools/benchmark.py --train-step``): the memory and time of
one training step of detector (or segmentor) configs, side by side.

Each model is measured in its own fresh process (``multiprocessing`` spawn), so nothing of another model is in
its memory; the processes are built and warmed up one after the other, then the timed steps go round-robin over
them (step ``i`` of every model before step ``i + 1``), so that a change of the machine's load hits all models
alike. In its process the config's model is built (:func:`rexnet_backbones.sources.build_source`, no download), put in
training mode, with the config's own ``optim_wrapper`` (``mmengine.optim.build_optim_wrapper``); the batch is
``batch_size`` random uint8 images of ``input_size`` with seeded random ground truth (5 boxes per image for
detectors, a random label map for segmentors). What is timed is ``model.train_step(data, optim_wrapper)``,
mmengine's training iteration: data preprocessor, forward with losses, backward, optimizer step, zero_grad.

* **step time**: median of the ``runs`` timed steps, after ``warmup`` steps (the first one creates the
  optimizer state), with the allocator as it is (and the 1-minute load average at the first timed step and at
  the end: time depends on the machine's load, memory does not).
* **peak memory above the model**: one more step after the timed ones. Before it, glibc's malloc gives its free
  heap back to the system (``malloc_trim``) and is set to map every block of 64 KiB or more on its own and
  unmap it on free (``mallopt(M_MMAP_THRESHOLD, 64 KiB)``; this slows steps down, hence not for the timed
  ones), so that the resident set follows the live tensors. The process's resident set size (``VmRSS``)
  then is the baseline (weights, optimizer state, batch, libraries); the peak resident set size (``VmHWM``,
  reset to the baseline through ``/proc/self/clear_refs``) during the step minus that baseline is reported:
  the activations kept for backward, the gradients and the temporaries.
* **saved tensors**: one more forward with losses under ``torch.autograd.graph.saved_tensors_hooks``: the
  bytes autograd keeps for backward (distinct storages, parameters excluded), per part of the model
  (backbone, neck, heads) and per backward op (``ConvolutionBackward0``, ``NativeBatchNormBackward0``, ...).

``mem_efficient`` (``'on'``, ``'off'``, ``'both'``) selects, for configs with our ``ReXNet`` backbone, its
memory-efficient training forward (the backbone's default) or timm's modules as they are
(:func:`rexnet_backbones.models.convert_mem_efficient`); ``'both'`` measures such configs twice.

**timm models** (a timm name instead of a config): an ImageNet-style classification step, the whole
network with 1000 classes: seeded random ``batch_size`` x 3 x ``input_size`` images and labels, cross-entropy,
``torch.optim.SGD`` (lr 0.1, momentum 0.9, weight decay 5e-5), ``zero_grad(set_to_none=True)``. ReXNet
classifiers get the same ``mem_efficient`` variants as ReXNet backbones.

Options of every model: ``device`` (``'cpu'`` or ``'cuda'``; CUDA steps are synchronized before and after each
timed step, and peak memory is ``torch.cuda.max_memory_allocated`` of one more step minus the memory allocated
before it), ``dtype`` (``'fp32'`` or ``'bf16'``: the forward and loss under ``torch.autocast(device, bfloat16)``),
``channels_last`` (weights and input in ``torch.channels_last``; configs: the backbone's input is made
channels-last by a forward pre-hook) and ``compile``: configs as mmengine's ``compile=True`` does
(``model.train_step = torch.compile(model.train_step)``), timm models as timm's ``train.py --torchcompile``
(``torch.compile(model)``). The warm-up steps' times are kept (``warmup_ms``: the first one includes the
compilation), and each step's process CPU time (``cpu_ms``, all threads), so that a run on a loaded machine
shows how much CPU it got. Saved tensors are counted for eager configs only.
"""
from __future__ import annotations

import collections
import ctypes
import gc
import multiprocessing
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from .plan import PlannedModel
from .settings import log
from ..errors import BenchmarkError

__all__ = ['TrainStepResult', 'measure_train_step', 'measure_train_steps', 'saved_tensor_bytes', 'TRAIN_STEP_NOTE']

TRAIN_STEP_NOTE = ("configs: model.train_step(data, optim_wrapper) (mmengine's training iteration: data "
                   'preprocessor, forward with losses, backward, optimizer step); timm models: forward, '
                   'cross-entropy over 1000 classes, backward, SGD step; in a fresh process per model, timed steps '
                   'round-robin over the models; peak memory = peak resident set size of one more step minus '
                   'the resident set size before it (weights, optimizer state, batch), with freed blocks of '
                   '64 KiB or more returned to the system; saved = bytes autograd keeps for backward')
_M_MMAP_THRESHOLD = -3
_BOXES_PER_IMAGE = 5


@dataclass
class TrainStepResult:
    """One model's training step: memory (MiB), time (ms) and what autograd keeps."""
    label: str
    spec: str
    backbone: str
    mem_efficient: Optional[bool]
    batch_size: int
    input_size: List[int]
    padded_shape: List[int] = field(default_factory=list)
    peak_mib: float = 0.0
    baseline_mib: float = 0.0
    step_ms: float = 0.0
    times_ms: List[float] = field(default_factory=list)
    saved_mib: float = 0.0
    saved_by_part_mib: Dict[str, float] = field(default_factory=dict)
    saved_by_op_mib: Dict[str, float] = field(default_factory=dict)
    load_average: List[float] = field(default_factory=list)
    seconds: float = 0.0
    reference: bool = False
    kind: str = 'config'
    device: str = 'cpu'
    dtype: str = 'fp32'
    channels_last: bool = False
    compiled: bool = False
    warmup_ms: List[float] = field(default_factory=list)
    cpu_ms: List[float] = field(default_factory=list)

    @property
    def img_per_s(self) -> float:
        return 1000.0 * self.batch_size / self.step_ms if self.step_ms else 0.0

    @property
    def best_img_per_s(self) -> float:
        """Images per second of the fastest timed step (on a loaded machine, the step that waited least)."""
        return 1000.0 * self.batch_size / min(self.times_ms) if self.times_ms else 0.0

    @property
    def cpu_per_wall(self) -> float:
        """Median process CPU time per timed step / median step time: the threads it actually got."""
        return statistics.median(self.cpu_ms) / self.step_ms if self.cpu_ms and self.step_ms else 0.0

    def to_json(self) -> Dict[str, Any]:
        return dict(asdict(self), img_per_s=self.img_per_s, best_img_per_s=self.best_img_per_s,
                    cpu_per_wall=self.cpu_per_wall)


# ---------------------------------------------------------------------------------------------- memory
def _status_kib(key: str) -> int:
    with open('/proc/self/status', encoding='ascii') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1])
    raise BenchmarkError(f'--train-step measures memory from /proc/self/status ({key}); it needs Linux')


def _reset_peak_rss() -> None:
    """Set ``VmHWM`` to the current resident set size (Linux >= 4.0)."""
    with open('/proc/self/clear_refs', 'w', encoding='ascii') as f:
        f.write('5')


def _return_freed_blocks() -> None:
    """glibc: give the free heap back to the system (``malloc_trim``), and from now on map every block of
    64 KiB or more on its own and unmap it on free (a fixed ``M_MMAP_THRESHOLD``)."""
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim(0)
        libc.mallopt(_M_MMAP_THRESHOLD, 64 * 1024)
    except (OSError, AttributeError):  # not glibc: the resident set may keep freed memory
        pass


# ---------------------------------------------------------------------------------------------- batch
def _num_classes(model: nn.Module) -> int:
    for head in (getattr(model, 'bbox_head', None), getattr(getattr(model, 'roi_head', None), 'bbox_head', None),
                 getattr(model, 'decode_head', None)):
        if head is not None and isinstance(getattr(head, 'num_classes', None), int):
            return head.num_classes
    raise BenchmarkError(f'--train-step: {type(model).__name__} has no bbox_head/roi_head/decode_head with '
                         'num_classes; give a detector or segmentor config')


def train_batch(model: nn.Module, scope: str, batch_size: int, height: int, width: int) -> Dict[str, Any]:
    """``batch_size`` random uint8 images with seeded random ground truth, as a dataloader yields them."""
    gen = torch.Generator().manual_seed(batch_size)
    num_classes = _num_classes(model)
    images = [torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=gen) for _ in range(batch_size)]
    meta = dict(img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
                scale_factor=(1.0, 1.0), flip=False, flip_direction=None)
    samples = []
    for _ in range(batch_size):
        if scope == 'mmseg':
            from mmengine.structures import PixelData
            from mmseg.structures import SegDataSample
            sample = SegDataSample(metainfo=meta)
            sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, height, width), generator=gen))
        else:
            from mmdet.structures import DetDataSample
            from mmengine.structures import InstanceData
            xy = torch.rand(_BOXES_PER_IMAGE, 2, generator=gen) * torch.tensor([width * 0.7, height * 0.7])
            wh = (torch.rand(_BOXES_PER_IMAGE, 2, generator=gen) * 0.25 + 0.05) * torch.tensor([width, height])
            sample = DetDataSample(metainfo=meta)
            sample.gt_instances = InstanceData(
                bboxes=torch.cat([xy, xy + wh], 1),
                labels=torch.randint(0, num_classes, (_BOXES_PER_IMAGE,), generator=gen))
        samples.append(sample)
    return dict(inputs=images, data_samples=samples)


# ---------------------------------------------------------------------------------------------- saved tensors
def _parts(model: nn.Module) -> Dict[str, nn.Module]:
    return {name: m for name, m in model.named_children() if name != 'data_preprocessor'}


def _ops_of_graph(root: Any) -> Dict[int, str]:
    """Storage pointer -> name of the first backward node (from ``root``) that saved it."""
    ops: Dict[int, str] = {}
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        values: List[Any] = []
        for attr in [a for a in dir(node) if a.startswith('_saved_')] + ['saved_tensors']:  # ops; Functions
            try:
                values.append(getattr(node, attr, None))
            except RuntimeError:  # freed already
                pass
        for v in values:
            for t in (v if isinstance(v, (tuple, list)) else [v]):
                if isinstance(t, torch.Tensor):
                    ops.setdefault(t.untyped_storage().data_ptr(), node.name())
        stack += [fn for fn, _ in node.next_functions]
    return ops


def saved_tensor_bytes(model: nn.Module, data: Dict[str, Any]) -> Tuple[Dict[str, int], Dict[str, int]]:
    """Bytes autograd keeps for the backward of ``model``'s losses on ``data``: per part of the model
    (its children: backbone, neck, heads) and per backward op; distinct storages, parameters excluded."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    where = ['other']
    saved: Dict[int, Tuple[str, int]] = {}
    handles = []
    for name, part in _parts(model).items():
        handles.append(part.register_forward_pre_hook(lambda *_, n=name: where.__setitem__(0, n)))
        handles.append(part.register_forward_hook(lambda *_: where.__setitem__(0, 'other')))

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved.setdefault(storage.data_ptr(), (where[0], storage.nbytes()))
        return t

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            data = model.data_preprocessor(data, True)
            losses = model(**data, mode='loss')
        loss, _ = model.parse_losses(losses)
        ops = _ops_of_graph(loss.grad_fn)
    finally:
        for h in handles:
            h.remove()
    by_part: Dict[str, int] = collections.Counter()
    by_op: Dict[str, int] = collections.Counter()
    for ptr, (part, nbytes) in saved.items():
        by_part[part] += nbytes
        by_op[f'{part} {ops.get(ptr, "?")}'] += nbytes
    return dict(by_part), dict(by_op)


# ---------------------------------------------------------------------------------------------- one model
def _sync(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def _channels_last_input(module: nn.Module, args: Tuple[Any, ...]) -> Tuple[Any, ...]:
    return tuple(a.contiguous(memory_format=torch.channels_last) if isinstance(a, torch.Tensor) and a.dim() == 4
                 else a for a in args)


def _has_rexnet_blocks(model: nn.Module) -> bool:
    from timm.models.rexnet import LinearBottleneck
    return any(isinstance(m, LinearBottleneck) for m in model.modules())


class _Run:
    """One model's measurement in this process: build and warm up, then timed steps, then the result."""

    def __init__(self, spec: str, label: str, batch_size: int, input_size: Tuple[int, int], warmup: int,
                 mem_efficient: Optional[bool], threads: Optional[int], kind: str = 'config', device: str = 'cpu',
                 dtype: str = 'fp32', channels_last: bool = False, compile: bool = False):
        if threads is not None:
            torch.set_num_threads(threads)
        self.t_start = time.time()
        self.device, self.kind = device, kind
        self.autocast = dict(device_type=device, dtype=torch.bfloat16, enabled=dtype == 'bf16')
        if kind == 'timm':
            backbone = self._build_timm(spec, batch_size, input_size, mem_efficient, channels_last, compile)
        else:
            backbone = self._build_config(spec, batch_size, input_size, mem_efficient, channels_last, compile)
        self.result = TrainStepResult(label, spec, backbone, mem_efficient, batch_size, list(input_size), kind=kind,
                                      device=device, dtype=dtype, channels_last=channels_last, compiled=compile)
        self.warmup = max(warmup, 1)

    def _build_config(self, spec, batch_size, input_size, mem_efficient, channels_last, compile) -> str:
        from mmengine.optim import build_optim_wrapper

        from ..sources import build_source
        from .models import describe_backbone
        source = build_source(spec)
        self.model = source.model.to(self.device).train()
        if mem_efficient is not None:
            from ..models import convert_mem_efficient
            convert_mem_efficient(self.model.backbone, enabled=mem_efficient)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
            self.model.backbone.register_forward_pre_hook(_channels_last_input)
        self.optim_wrapper = build_optim_wrapper(self.model, source.cfg.optim_wrapper)
        self.data = train_batch(self.model, source.scope, batch_size, *input_size)
        if compile:  # as mmengine's Runner with compile=True
            self.model.train_step = torch.compile(self.model.train_step)
        model, optim_wrapper, data = self.model, self.optim_wrapper, self.data

        def step() -> None:
            with torch.autocast(**self.autocast):
                model.train_step(data, optim_wrapper)
        self.step = step
        return describe_backbone(source.cfg.model.backbone)

    def _build_timm(self, spec, batch_size, input_size, mem_efficient, channels_last, compile) -> str:
        import timm
        import torch.nn.functional as F
        model = timm.create_model(spec, pretrained=False, num_classes=1000)
        if mem_efficient is not None:
            from ..models import convert_mem_efficient
            convert_mem_efficient(model, enabled=mem_efficient)
        model = model.to(self.device).train()
        gen = torch.Generator().manual_seed(batch_size)
        x = torch.randn(batch_size, 3, *input_size, generator=gen).to(self.device)
        y = torch.randint(0, 1000, (batch_size,), generator=gen).to(self.device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        self.model = model
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-5)
        forward = torch.compile(model) if compile else model  # as timm's train.py --torchcompile

        def step() -> None:
            with torch.autocast(**self.autocast):
                loss = F.cross_entropy(forward(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        self.step = step
        return f'timm {spec}'

    def _timed(self) -> Tuple[float, float]:
        """One step: (wall ms, process CPU ms)."""
        _sync(self.device)
        t0, c0 = time.perf_counter(), time.process_time()
        self.step()
        _sync(self.device)
        return (time.perf_counter() - t0) * 1000.0, (time.process_time() - c0) * 1000.0

    def warm_up(self) -> None:
        for _ in range(self.warmup):
            self.result.warmup_ms.append(self._timed()[0])
        gc.collect()

    def timed_step(self) -> float:
        if not self.result.load_average:
            self.result.load_average.append(os.getloadavg()[0])
        ms, cpu_ms = self._timed()
        self.result.times_ms.append(ms)
        self.result.cpu_ms.append(cpu_ms)
        return ms

    def memory_step(self) -> Tuple[float, float]:
        """(baseline, peak above it) in MiB of one more step: on CUDA allocated memory, on CPU the resident set
        with freed blocks given back to the system."""
        gc.collect()
        if self.device == 'cuda':
            torch.cuda.synchronize()
            baseline = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            self.step()
            torch.cuda.synchronize()
            return baseline / 2 ** 20, (torch.cuda.max_memory_allocated() - baseline) / 2 ** 20
        _return_freed_blocks()
        baseline = _status_kib('VmRSS')
        _reset_peak_rss()
        self.step()
        return baseline / 1024.0, (_status_kib('VmHWM') - baseline) / 1024.0

    def finish(self) -> TrainStepResult:
        result = self.result
        result.step_ms = statistics.median(result.times_ms)
        result.load_average.append(os.getloadavg()[0])
        result.baseline_mib, result.peak_mib = self.memory_step()
        if self.kind == 'config':
            result.padded_shape = list(self.model.data_preprocessor(self.data, True)['inputs'].shape[-2:])
            if not result.compiled:
                with torch.autocast(**self.autocast):
                    by_part, by_op = saved_tensor_bytes(self.model, self.data)
                result.saved_mib = sum(by_part.values()) / 2 ** 20
                result.saved_by_part_mib = {k: v / 2 ** 20 for k, v in sorted(by_part.items(), key=lambda kv: -kv[1])}
                result.saved_by_op_mib = {k: v / 2 ** 20 for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])[:12]}
        else:
            result.padded_shape = list(result.input_size)
        result.seconds = round(time.time() - self.t_start, 1)
        return result


def measure_train_step(spec: str, label: str, batch_size: int, input_size: Tuple[int, int], runs: int,
                       warmup: int, mem_efficient: Optional[bool] = None,
                       threads: Optional[int] = None, **options: Any) -> TrainStepResult:
    """Memory, time and saved tensors of ``spec``'s training step, in this process (see the module).
    ``options``: ``kind`` ('config' or 'timm'), ``device``, ``dtype``, ``channels_last``, ``compile``."""
    run = _Run(spec, label, batch_size, input_size, warmup, mem_efficient, threads, **options)
    run.warm_up()
    for _ in range(max(runs, 1)):
        run.timed_step()
    return run.finish()


def _worker(conn: Any, args: Tuple[Any, ...], options: Dict[str, Any]) -> None:
    """A fresh process's command loop: ``'warmup'``, ``'step'`` (replies ms), ``'finish'`` (replies the result)."""
    try:
        run = _Run(*args, **options)
        conn.send(('ready', None))
        while True:
            command = conn.recv()
            if command == 'warmup':
                run.warm_up()
                conn.send(('ready', None))
            elif command == 'step':
                conn.send(('ms', run.timed_step()))
            else:
                conn.send(('result', run.finish()))
                return
    except Exception as e:  # noqa: B902  (reported by the parent, with the model's name)
        conn.send(('error', f'{type(e).__name__}: {e}'))


# ---------------------------------------------------------------------------------------------- the run
def _variants(planned: PlannedModel, mode: str) -> List[Optional[bool]]:
    """``[None]`` for a config without our ReXNet backbone (or a timm model that is no ReXNet); else the
    ``mem_efficient`` values of ``mode``."""
    if planned.kind == 'timm':
        if not planned.spec.startswith('rexnet_') or planned.spec.startswith('rexnet_lite'):
            return [None]  # ReXNet-lite's in-place ReLU6 has no memory-efficient variant
    else:
        from mmengine.config import Config
        backbone = Config.fromfile(planned.path).model.get('backbone', {})
        if backbone.get('type') != 'ReXNet':
            return [None]
    return {'on': [True], 'off': [False], 'both': [False, True]}[mode]


class _Worker:
    """The parent's end of one model's process."""

    def __init__(self, context: Any, label: str, args: Tuple[Any, ...], options: Dict[str, Any]):
        self.label = label
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child, args, options), daemon=True)
        self.process.start()

    def ask(self, command: Optional[str] = None) -> Any:
        if command is not None:
            self.conn.send(command)
        kind, value = self.conn.recv()
        if kind == 'error':
            raise BenchmarkError(f'--train-step: {self.label} failed: {value}')
        return value

    def close(self) -> None:
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()


def measure_train_steps(planned: List[PlannedModel], batch_size: int, input_size: Tuple[int, int], runs: int,
                        warmup: int, mem_efficient: str = 'on', threads: Optional[int] = None, device: str = 'cpu',
                        dtype: str = 'fp32', channels_last: bool = False,
                        compile_modes: Tuple[bool, ...] = (False,)) -> List[TrainStepResult]:
    """Every planned model (and ``mem_efficient`` variant, and eager/compiled with ``compile_modes``) in its own
    fresh process: built and warmed up one after the other, then the timed steps round-robin over all of them
    (step ``i`` of every model before step ``i + 1``, so that a change of the machine's load hits all alike),
    then the results."""
    jobs = [(m, v, c) for m in planned for v in _variants(m, mem_efficient) for c in compile_modes]
    context = multiprocessing.get_context('spawn')
    workers: List[_Worker] = []
    try:
        for i, (model, variant, compiled) in enumerate(jobs, 1):
            label = model.label + {None: '', True: ' (mem-efficient)', False: ' (timm modules)'}[variant] + \
                (' compiled' if compiled else '')
            log(f'[{i}/{len(jobs)}] {label}: building and warming up ({warmup} step(s)) in a fresh process')
            options = dict(kind=model.kind, device=device, dtype=dtype, channels_last=channels_last,
                           compile=compiled)
            workers.append(_Worker(context, label, (model.spec, label, batch_size, tuple(input_size), warmup,
                                                    variant, threads), options))
            workers[-1].ask()
            workers[-1].ask('warmup')
        for run in range(max(runs, 1)):
            times = [w.ask('step') for w in workers]
            log(f'timed step {run + 1}/{max(runs, 1)}: ' + ', '.join(f'{w.label} {t / 1000:.2f} s'
                                                                      for w, t in zip(workers, times)))
        results = []
        for w, (model, _, _) in zip(workers, jobs):
            result = w.ask('finish')
            result.reference = model.reference
            log(f'{w.label}: peak {result.peak_mib:.0f} MiB above the model, step {result.step_ms / 1000:.2f} s '
                f'({result.img_per_s:.1f} img/s), saved {result.saved_mib:.0f} MiB')
            results.append(result)
        return results
    finally:
        for w in workers:
            w.close()
