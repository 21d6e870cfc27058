"""Benchmark of ReXNet models against references: size, FLOPs, speed per backend, accuracy.

The library behind ``tools/benchmark.py`` (which only parses the command line): see
:class:`Settings` for every option and :func:`run_benchmark` for the run.

Models are mmdet/mmseg configs (a file or ``package::relative/path.py`` inside an installed
OpenMMLab package) or timm model names (``rexnet_100``, ``regnetx_008``, ``rexnet_lite_100``),
built ``features_only`` with ``out_indices`` (default ``(1, 2, 3, 4)``, strides 4-32).

Config models are built with every ``Pretrained`` ``init_cfg`` (and ``pretrained=``) removed, so
nothing is downloaded; they are initialised by their own ``init_weights()`` after
``torch.manual_seed(0)``. Weights do not change speed or FLOPs, except for the number of RPN
proposals of two-stage detectors (the RoI head runs on them); it is recorded in the JSON.

What is reported per model (the JSON has all raw numbers and the environment):

* params: all parameters of the model, and of ``model.backbone`` (timm models: the model).
* GFLOPs: ``mmengine.analysis.FlopAnalyzer`` (fvcore's counter: one multiply-add = one FLOP, the
  convention of mmdet's ``get_flops.py`` and of the papers) for one image of the given size, of
  exactly the call that is timed (see below), and of ``model.backbone`` alone on the same tensor.
  Element-wise ops (activations, additions) and ops such as NMS are not counted.
* latency (without ``backends``): for each batch size B, B random HxW images and their data samples
  (img_shape = HxW, scale 1) go through ``model.data_preprocessor`` ONCE (normalisation and padding
  to the size divisor, e.g. 800x1333 -> 800x1344: not timed). What is timed is then one call
  ``model(inputs, data_samples, mode='tensor')`` in eval mode under ``torch.no_grad()``: mmdet's
  ``_forward`` = backbone + neck + head outputs. For one-stage detectors (RetinaNet) that is the
  raw class/box maps without box decoding or NMS; for two-stage detectors it includes the RPN's
  proposal decoding + NMS and the RoI head on those proposals. For segmentors it is
  ``EncoderDecoder._forward``. With ``backbone_only`` it is ``model.backbone(inputs)``; a timm
  model is called on a seeded random ``N(0, 1)`` batch. After ``warmup`` untimed calls, each of
  ``runs`` calls is timed with ``time.perf_counter`` (on CUDA between synchronisations);
  latency = median per batch (ms), throughput = B / median latency.
* backends (``backends=[...]``, CPU, batch ``batch_sizes[0]``): the same call on ``eager`` torch,
  ``channels_last``, ``compile`` (``torch.compile`` of the channels_last model), ``onnxruntime``
  (CPU provider, default graph optimisations) and ``openvino`` (CPU, ``PERFORMANCE_HINT=LATENCY``,
  explicit ``INFERENCE_PRECISION_HINT``; the precision and execution devices the compiled model
  reports are recorded). With ``deploy`` each backend also runs the deploy form of the model
  (:func:`rexnet_backbones.deploy.fuse.deploy_model`: BN folded, ReXNet widths zero-padded to
  ``channel_multiple``, cheaper partial residual). Every (model, backend) pair is warmed up, then
  the timed calls go round-robin over all of them (run ``i`` of every pair before run ``i + 1``),
  so that a change of machine load hits all columns alike. Columns: median ms, ratio to the
  reference model on the same backend, and parity = max |output - eager fp32 output| on the same
  input. ``bf16`` in ``precisions`` adds bf16 columns (torch autocast, OpenVINO bf16) with their
  deviation from eager fp32. "best" is the fastest fp32 path whose parity is within ``tolerance``.
* accuracy (optional): with ``checkpoints`` (one per config, ``none`` to skip one) each checkpoint
  is evaluated on the config's test set with :func:`rexnet_backbones.engine.test`.
"""
from __future__ import annotations

import contextlib
import datetime
import gc
import importlib
import importlib.util
import json
import logging
import math
import os
import os.path as osp
import platform
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ['BASELINES', 'BACKENDS', 'REFERENCE', 'Settings', 'BenchmarkError', 'resolve_config',
           'plan', 'disable_pretrained', 'build_model', 'build_timm_model', 'build_runners',
           'measure', 'run_benchmark', 'markdown', 'markdown_backends', 'write_outputs']

#: (label, config) of mmdet's own detectors added by ``baselines``
BASELINES = [
    ('RetinaNet R-18', 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'),
    ('RetinaNet RegNetX-800MF', 'mmdet::regnet/retinanet_regnetx-800MF_fpn_1x_coco.py'),
    ('RetinaNet R-50', 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'),
    ('Faster R-CNN RegNetX-400MF', 'mmdet::regnet/faster-rcnn_regnetx-400MF_fpn_ms-3x_coco.py'),
]

#: default reference (``reference='auto'``): RegNetX-800MF as a timm name or mmdet's RetinaNet config
REFERENCE = ('regnetx_008', 'mmdet::regnet/retinanet_regnetx-800MF_fpn_1x_coco.py')

TORCH_BACKENDS = ('eager', 'channels_last', 'compile')
GRAPH_BACKENDS = ('onnxruntime', 'openvino')
BACKENDS = TORCH_BACKENDS + GRAPH_BACKENDS
#: backends that have a bf16 column with ``precisions=('fp32', 'bf16')``
BF16_BACKENDS = ('eager', 'channels_last', 'openvino')
INSTALL_HINT = "pip install -e '.[deploy]'"

TIMED = ("model(inputs, data_samples, mode='tensor') in eval mode under torch.no_grad() on inputs "
         'already through model.data_preprocessor (not timed): backbone + neck + head outputs; '
         'one-stage detectors without box decoding/NMS, two-stage detectors with RPN proposals '
         '(decoding + NMS) and the RoI head on them. Median over the timed runs after the warm-up '
         'runs; throughput = batch size / median latency')
TIMED_BACKBONE = ('model.backbone(inputs) in eval mode under torch.no_grad() on inputs already '
                  'through model.data_preprocessor (not timed); timm models: model(inputs) '
                  '(features_only) on a seeded N(0, 1) batch. Median over the timed runs after '
                  'the warm-up runs; throughput = batch size / median latency')
FLOPS_NOTE = ('mmengine.analysis.FlopAnalyzer (fvcore counting: 1 multiply-add = 1 FLOP), one image, '
              'the same call as timed; element-wise ops and NMS are not counted')


class BenchmarkError(Exception):
    """A problem with the request (missing config, missing package, ...): reported without a traceback."""


@dataclass
class Settings:
    """Everything a benchmark run depends on (the command-line options of ``tools/benchmark.py``)."""
    models: List[str]
    baselines: bool = False
    input_size: Tuple[int, int] = (800, 1333)
    batch_sizes: Tuple[int, ...] = (1, 4)
    runs: int = 10
    warmup: int = 3
    device: Optional[str] = None
    threads: Optional[int] = None
    backbone_only: bool = False
    checkpoints: Optional[List[str]] = None
    work_dir: str = osp.join('work_dirs', 'benchmark')
    #: backends to compare side by side (CPU); empty: the classic per-device latency table
    backends: Tuple[str, ...] = ()
    #: 'off': models as built; 'on': deploy forms only; 'both': both, side by side
    deploy: str = 'off'
    #: 'auto' (RegNetX-800MF when it is measured), 'none', or a model to add as the reference
    reference: str = 'auto'
    out_indices: Tuple[int, ...] = (1, 2, 3, 4)
    precisions: Tuple[str, ...] = ('fp32',)
    channel_multiple: int = 8
    tolerance: float = 1e-4

    def check(self) -> None:
        """Raise :class:`BenchmarkError` for values no run can use."""
        if any(b < 1 for b in self.batch_sizes):
            raise BenchmarkError('--batch-sizes must be positive')
        if self.runs < 0 or self.warmup < 0:
            raise BenchmarkError('--runs and --warmup must be >= 0')
        if any(s < 1 for s in self.input_size):
            raise BenchmarkError('--input-size must be positive')
        if self.threads is not None and self.threads < 1:
            raise BenchmarkError('--threads must be >= 1')
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise BenchmarkError(f'unknown backend(s) {unknown}; choose from {list(BACKENDS)}')
        if self.deploy not in ('off', 'on', 'both'):
            raise BenchmarkError(f"--deploy must be 'off', 'on' or 'both', got {self.deploy!r}")
        if any(p not in ('fp32', 'bf16') for p in self.precisions) or 'fp32' not in self.precisions:
            raise BenchmarkError(f"--precisions: 'fp32' and optionally 'bf16', got {list(self.precisions)}")
        if self.backends and self.device == 'cuda':
            raise BenchmarkError('--backends compares CPU backends: use --device cpu (or leave it out)')


def log(message: str) -> None:
    stamp = datetime.datetime.now().strftime('%H:%M:%S')
    print(f'[benchmark {stamp}] {message}', file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# planning
# ---------------------------------------------------------------------------------------------
def resolve_config(spec: str) -> str:
    """Path of a config file or of ``package::relative/path.py`` (mmengine's notation)."""
    if '::' in spec:
        package, rel = spec.split('::', 1)
        try:
            found = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            found = None
        if found is None or not found.submodule_search_locations:
            raise BenchmarkError(f'config {spec!r}: package {package!r} is not installed')
        for root in found.submodule_search_locations:
            for sub in (osp.join('.mim', 'configs'), osp.join('..', 'configs')):
                path = osp.normpath(osp.join(root, sub, rel))
                if osp.isfile(path):
                    return path
        raise BenchmarkError(f'config file not found: {spec} (no {rel} in the configs of the '
                             f'installed {package})')
    if not osp.isfile(spec):
        raise BenchmarkError(f'config file not found: {spec}')
    return osp.abspath(spec)


def is_config_spec(spec: str) -> bool:
    """A config (file or ``package::path``) rather than a timm model name."""
    return '::' in spec or spec.endswith('.py') or os.sep in spec or '/' in spec or osp.isfile(spec)


def config_label(spec: str) -> str:
    return osp.splitext(osp.basename(spec.split('::')[-1]))[0]


def _timm_entry(spec: str) -> Dict[str, Any]:
    import timm

    import rexnet_backbones  # noqa: F401  (registers rexnet_lite_*, rexnet_090, rexnet_220)
    if spec not in timm.list_models():
        raise BenchmarkError(f'unknown model {spec!r}: not a config file (.py, package::path) nor a '
                             'timm model name (e.g. rexnet_100, rexnet_lite_100, regnetx_008)')
    return dict(spec=spec, path=None, kind='timm', baseline=None, checkpoint=None, reference=False)


def _entry(spec: str, baseline_labels: Dict[str, str]) -> Dict[str, Any]:
    if not is_config_spec(spec):
        return _timm_entry(spec)
    path = resolve_config(spec)
    return dict(spec=spec, path=path, kind='config', baseline=baseline_labels.get(path),
                checkpoint=None, reference=False)


def plan(settings: Settings) -> List[Dict[str, Any]]:
    """The list of models to measure; checks models, checkpoints and backends before anything is built."""
    settings.check()
    specs = list(settings.models)
    wants_baselines = settings.baselines or any('::' in c for c in specs) \
        or settings.reference not in ('auto', 'none')
    baseline_labels = {resolve_config(spec): label for label, spec in BASELINES} if wants_baselines else {}
    entries = [_entry(spec, baseline_labels) for spec in specs]
    if settings.checkpoints is not None:
        if len(settings.checkpoints) != len(specs):
            raise BenchmarkError(
                f'--checkpoints: got {len(settings.checkpoints)} checkpoint(s) for '
                f'{len(specs)} config(s); give exactly one per CONFIG, in the same order '
                '("none" for a config without one)')
        for entry, ckpt in zip(entries, settings.checkpoints):
            if ckpt.lower() in ('none', '-'):
                continue
            if entry['kind'] != 'config':
                raise BenchmarkError(f'--checkpoints: {entry["spec"]} is a timm model, not a config; '
                                     'give "none" for it')
            if '://' not in ckpt and not osp.isfile(ckpt):
                raise BenchmarkError(f'checkpoint not found: {ckpt} (for {entry["spec"]})')
            entry['checkpoint'] = ckpt
    if settings.baselines:
        seen = {e['path'] for e in entries}
        for label, spec in BASELINES:
            path = resolve_config(spec)
            if path not in seen:  # a baseline also given as CONFIG is measured once
                entries.append(dict(spec=spec, path=path, kind='config', baseline=label,
                                    checkpoint=None, reference=False))
    _mark_reference(entries, settings.reference, baseline_labels)
    _check_backends_installed(settings.backends)
    return entries


def _same_model(entry: Dict[str, Any], spec: str) -> bool:
    if entry['kind'] == 'timm':
        return entry['spec'] == spec
    return is_config_spec(spec) and entry['path'] == resolve_config(spec)


def _mark_reference(entries, reference: str, baseline_labels) -> None:
    if reference == 'none':
        return
    if reference == 'auto':
        for entry in entries:
            if any(_same_model(entry, spec) for spec in REFERENCE
                   if entry['kind'] == ('config' if is_config_spec(spec) else 'timm')):
                entry['reference'] = True
                return
        return
    for entry in entries:
        if _same_model(entry, reference):
            entry['reference'] = True
            return
    entry = _entry(reference, baseline_labels)
    entry['reference'] = True
    entries.append(entry)


def _check_backends_installed(backends: Sequence[str]) -> None:
    graph = [b for b in backends if b in GRAPH_BACKENDS]
    needed = (['onnx'] if graph else []) + graph
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise BenchmarkError(f'--backends {" ".join(graph)}: {", ".join(missing)} not installed; '
                             f'{INSTALL_HINT} installs onnx, onnxruntime and openvino')


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------
def _is_pretrained(init_cfg) -> bool:
    return isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained'


def disable_pretrained(node, path: str = 'model', changed=None):
    """Remove every Pretrained init (``init_cfg`` / ``pretrained``) in place; returns the keys."""
    changed = [] if changed is None else changed
    if isinstance(node, dict):
        for key in list(node.keys()):
            value = node[key]
            where = f'{path}.{key}'
            if key == 'init_cfg' and _is_pretrained(value):
                node[key] = None
                changed.append(where)
            elif key == 'init_cfg' and isinstance(value, (list, tuple)) and \
                    any(_is_pretrained(v) for v in value):
                kept = [v for v in value if not _is_pretrained(v)]
                node[key] = kept or None
                changed.append(where)
            elif key == 'pretrained' and isinstance(value, str):
                node[key] = None
                changed.append(where)
            else:
                disable_pretrained(value, where, changed)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            disable_pretrained(value, f'{path}.{i}', changed)
    return changed


@contextlib.contextmanager
def quiet_mmengine_logs():
    """Hide the INFO lines of init_weights() (mmengine's logger writes to stdout)."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    old = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(old)


def build_model(path: str):
    import torch
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    cfg = Config.fromfile(path)  # also imports custom_imports (rexnet_backbones)
    disabled = disable_pretrained(cfg.model)
    scope = cfg.get('default_scope', None) or 'mmengine'
    if scope != 'mmengine':
        importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        torch.manual_seed(0)
        model = registry.build(cfg.model)
        with quiet_mmengine_logs():
            model.init_weights()
    model.eval()
    return cfg, scope, model, disabled


def describe_backbone(backbone_cfg) -> str:
    kind = backbone_cfg.get('type', '?')
    kind = kind if isinstance(kind, str) else getattr(kind, '__name__', str(kind))
    if kind == 'ReXNet':
        arch = backbone_cfg.get('arch', 'rexnet_100')
        wf = backbone_cfg.get('widen_factor', None)
        return f'ReXNet {arch}' + (f' x{wf}' if wf else '')
    if kind in ('ResNet', 'ResNetV1d', 'ResNeXt') and 'depth' in backbone_cfg:
        return f'{kind}-{backbone_cfg["depth"]}'
    if kind == 'RegNet' and isinstance(backbone_cfg.get('arch'), str):
        return f'RegNet {backbone_cfg["arch"]}'
    return kind


def data_sample_class(scope: str):
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample
        return DetDataSample
    if scope == 'mmseg':
        from mmseg.structures import SegDataSample
        return SegDataSample
    from mmengine.structures import BaseDataElement
    return BaseDataElement


def make_batch(model, scope: str, batch_size: int, height: int, width: int):
    """Random uint8 images through the model's data_preprocessor (on the model's device)."""
    import torch
    gen = torch.Generator().manual_seed(batch_size)
    sample_cls = data_sample_class(scope)
    images = [torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=gen)
              for _ in range(batch_size)]
    samples = [sample_cls(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                        pad_shape=(height, width), scale_factor=(1.0, 1.0)))
               for _ in range(batch_size)]
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=images, data_samples=samples), False)
    return data['inputs'], data['data_samples']


def tensor_forward(model, data_samples, backbone_only: bool):
    """The timed (and FLOP-counted) call, as an nn.Module taking the batch tensor."""
    import torch.nn as nn

    class TensorForward(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, inputs):
            if backbone_only:
                return self.model.backbone(inputs)
            return self.model(inputs, data_samples, mode='tensor')

    return TensorForward()


def num_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_flops(module, inputs):
    """FlopAnalyzer on ``module(inputs)``: total, per top-level child, uncounted ops."""
    import torch
    from mmengine.analysis import FlopAnalyzer
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter('ignore')
        analyzer = FlopAnalyzer(module, (inputs,))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        analyzer.tracer_warnings('none')
        total = int(analyzer.total())
        by_module = analyzer.by_module()
        unsupported = {k: int(v) for k, v in analyzer.unsupported_ops().items()}
    return total, by_module, unsupported


def top_level_flops(by_module, prefix: str = 'model.'):
    out = {}
    for name, value in by_module.items():
        if name.startswith(prefix) and '.' not in name[len(prefix):]:
            out[name[len(prefix):]] = int(value)
    return out


@contextlib.contextmanager
def record_rois(model, seen: list):
    """Append the number of RoIs that reach a two-stage detector's box RoI extractor to ``seen``."""
    extractor = getattr(getattr(model, 'roi_head', None), 'bbox_roi_extractor', None)
    handle = None
    if extractor is not None:
        def hook(module, args, output):
            if len(args) > 1:
                seen.append(int(args[1].shape[0]))  # a traced size is a 0-dim tensor: int() it
        handle = extractor.register_forward_hook(hook)
    try:
        yield seen
    finally:
        if handle is not None:
            handle.remove()


def build_timm_model(name: str, out_indices: Sequence[int] = (1, 2, 3, 4)):
    """A timm model as a feature extractor (``features_only``) in eval mode, seeded init."""
    import timm
    import torch

    import rexnet_backbones  # noqa: F401
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, features_only=True,
                              out_indices=tuple(out_indices))
    return model.eval()


def timm_inputs(batch_size: int, height: int, width: int):
    import torch
    gen = torch.Generator().manual_seed(batch_size)
    return torch.randn(batch_size, 3, height, width, generator=gen)


def time_forward(forward, inputs, runs: int, warmup: int, device: str):
    import torch
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
    times = []
    with torch.no_grad():
        for _ in range(warmup):
            forward(inputs)
        sync()
        for _ in range(runs):
            start = time.perf_counter()
            forward(inputs)
            sync()
            times.append((time.perf_counter() - start) * 1000.0)
    return _stats(times, inputs.shape[0], runs, warmup)


def _stats(times: List[float], batch: int, runs: int, warmup: int) -> Dict[str, Any]:
    median = statistics.median(times)
    return dict(median_ms=median, mean_ms=statistics.fmean(times), min_ms=min(times),
                max_ms=max(times), stdev_ms=statistics.stdev(times) if len(times) > 1 else 0.0,
                images_per_s=batch / (median / 1000.0), runs=runs, warmup=warmup, times_ms=times)


# ---------------------------------------------------------------------------------------------
# backends
# ---------------------------------------------------------------------------------------------
def _flat(out) -> list:
    """Flat list of output arrays (float64 numpy) in torch.onnx's output order."""
    import numpy as np
    import torch
    if isinstance(out, torch.Tensor):
        return [out.detach().float().cpu().numpy().astype(np.float64)]
    if isinstance(out, np.ndarray):
        return [out.astype(np.float64)]
    if isinstance(out, dict):
        out = list(out.values())
    flat = []
    for o in out:
        flat.extend(_flat(o))
    return flat


def max_abs_diff(a, b) -> float:
    """Max |a - b| over two (nested) outputs; inf when their structure or shapes differ."""
    fa, fb = _flat(a), _flat(b)
    if len(fa) != len(fb) or any(x.shape != y.shape for x, y in zip(fa, fb)):
        return math.inf
    return max((float(abs(x - y).max()) if x.size else 0.0 for x, y in zip(fa, fb)), default=0.0)


@dataclass
class Runner:
    """One (model, backend, deploy, precision) path: ``call()`` is what is timed."""
    key: str
    backend: str
    deploy: bool
    precision: str
    call: Callable[[], Any]
    info: Dict[str, Any] = field(default_factory=dict)


def _torch_call(module, x, bf16: bool):
    import torch

    def call():
        with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            return module(x)
    return call


def _ort_runner(onnx_file: str, x, threads: Optional[int]):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    # idle worker threads would otherwise spin and slow down the next (interleaved) backend
    opts.add_session_config_entry('session.intra_op.allow_spinning', '0')
    session = ort.InferenceSession(onnx_file, opts, providers=['CPUExecutionProvider'])
    feed = {session.get_inputs()[0].name: x.numpy()}
    info = dict(providers=session.get_providers(), onnxruntime=ort.__version__,
                graph_optimization_level=str(opts.graph_optimization_level))
    return (lambda: session.run(None, feed)), info


def _ov_runner(onnx_file: str, x, threads: Optional[int], precision: str):
    import openvino as ov
    config = {'PERFORMANCE_HINT': 'LATENCY',
              'INFERENCE_PRECISION_HINT': 'f32' if precision == 'fp32' else 'bf16'}
    if threads:
        config['INFERENCE_NUM_THREADS'] = threads
    compiled = ov.Core().compile_model(onnx_file, 'CPU', config)
    request = compiled.create_infer_request()
    feed = {0: x.numpy()}
    n_out = len(compiled.outputs)

    def call():
        request.infer(feed)
        return [request.get_output_tensor(i).data.copy() for i in range(n_out)]
    info = dict(openvino=ov.__version__, requested=config,
                inference_precision=_ov_str(compiled.get_property('INFERENCE_PRECISION_HINT')),
                execution_devices=[str(d) for d in compiled.get_property('EXECUTION_DEVICES')],
                performance_hint=str(compiled.get_property('PERFORMANCE_HINT')),
                num_threads=int(compiled.get_property('INFERENCE_NUM_THREADS')))
    return call, info


def _ov_str(value) -> str:
    to_string = getattr(value, 'to_string', None)
    return to_string() if callable(to_string) else str(value)


def _export(module, x, path: str) -> str:
    from .deploy.onnx import export_onnx
    export_onnx(module, path, tuple(x.shape), dynamic_batch=False, dynamic_spatial=False)
    return path


def build_runners(make_module: Callable[[bool, str], Any], x, settings: Settings, tmp_dir: str,
                  label: str) -> Tuple[List[Runner], Dict[str, str]]:
    """The runners of one model for ``settings.backends`` x deploy variants x precisions.

    ``make_module(deploy, residual)`` returns the module to run (a fresh copy for ``deploy``).
    Returns the runners and, per column key, the error of a path that could not be built.
    """
    import torch
    variants = {'off': [False], 'on': [True], 'both': [False, True]}[settings.deploy]
    runners: List[Runner] = []
    errors: Dict[str, str] = {}
    for deploy in variants:
        suffix = '+deploy' if deploy else ''
        onnx_file = None
        for backend in settings.backends:
            key = backend + suffix
            try:
                if backend in TORCH_BACKENDS:
                    module = make_module(deploy, 'inplace')
                    xx = x
                    if backend != 'eager':
                        module = module.to(memory_format=torch.channels_last)
                        xx = x.contiguous(memory_format=torch.channels_last)
                    if backend == 'compile':
                        module = torch.compile(module)
                    for precision in settings.precisions:
                        if precision == 'bf16' and (backend not in BF16_BACKENDS or deploy):
                            continue
                        pkey = key if precision == 'fp32' else f'{key} bf16'
                        runners.append(Runner(pkey, backend, deploy, precision,
                                              _torch_call(module, xx, precision == 'bf16'),
                                              dict(memory_format='channels_last' if backend != 'eager'
                                                   else 'contiguous')))
                    continue
                if onnx_file is None:
                    t0 = time.time()
                    name = f'{label}{"_deploy" if deploy else ""}.onnx'.replace('/', '_')
                    onnx_file = _export(make_module(deploy, 'pad'), x, osp.join(tmp_dir, name))
                    log(f'{label}: exported {name} in {time.time() - t0:.0f} s')
                if backend == 'onnxruntime':
                    call, info = _ort_runner(onnx_file, x, settings.threads)
                    runners.append(Runner(key, backend, deploy, 'fp32', call, info))
                else:
                    for precision in settings.precisions:
                        if precision == 'bf16' and deploy:  # bf16: the models as built only
                            continue
                        call, info = _ov_runner(onnx_file, x, settings.threads, precision)
                        pkey = key if precision == 'fp32' else f'{key} bf16'
                        runners.append(Runner(pkey, backend, deploy, precision, call, info))
            except Exception as e:  # noqa: B902  (one failing path must not stop the others)
                errors[key] = f'{type(e).__name__}: {e}'.splitlines()[0][:300]
                log(f'{label}: {key} failed: {errors[key]}')
    return runners, errors


def _deploy_factory(base_module, channel_multiple: int, detector=None, rebuild=None):
    """``make_module(deploy, residual)`` for :func:`build_runners`: the module as built, or a deploy
    copy (of ``detector``, wrapped again by ``rebuild``, when given)."""
    from .deploy.fuse import deploy_model

    def make(deploy: bool, residual: str):
        if not deploy:
            return base_module
        if detector is None:
            return deploy_model(base_module, residual=residual, channel_multiple=channel_multiple)
        return rebuild(deploy_model(detector, residual=residual, channel_multiple=channel_multiple))
    return make


# ---------------------------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------------------------
def entry_label(entry) -> str:
    if entry['kind'] == 'timm':
        return entry['spec']
    return entry['baseline'] or config_label(entry['spec'])


def measure(entry, settings: Settings, devices, index: int, total: int, state=None):
    """Params, FLOPs and (without backends) latency of one model; with backends, its runners are
    built and left in ``state['runners']`` for :func:`time_backends`."""
    import torch
    height, width = settings.input_size
    label = entry_label(entry)
    prefix = f'[{index}/{total}] {label}'
    t0 = time.time()
    log(f'{prefix}: building {entry["spec"]}')
    timm_model = entry['kind'] == 'timm'
    if timm_model:
        model = build_timm_model(entry['spec'], settings.out_indices)
        scope, disabled = None, []
        result = dict(label=label, config=None, config_path=None, timm_model=entry['spec'],
                      out_indices=list(settings.out_indices), baseline=False, scope=None,
                      model_type='timm features_only', backbone=entry['spec'],
                      disabled_pretrained_init=[], params=num_params(model),
                      backbone_params=num_params(model))
        inputs = timm_inputs(1, height, width)
        forward = model
    else:
        cfg, scope, model, disabled = build_model(entry['path'])
        result = dict(
            label=label, config=entry['spec'], config_path=entry['path'],
            baseline=entry['baseline'] is not None, scope=scope,
            model_type=str(cfg.model.get('type')),
            backbone=describe_backbone(cfg.model.get('backbone', {})),
            disabled_pretrained_init=disabled,
            params=None if settings.backbone_only else num_params(model),
            backbone_params=num_params(model.backbone))
        inputs, samples = make_batch(model, scope, 1, height, width)
        forward = tensor_forward(model, samples, settings.backbone_only)
    result['reference'] = bool(entry.get('reference'))
    result['input_shape'] = [height, width]
    result['padded_input_shape'] = list(inputs.shape[-2:])

    log(f'{prefix}: counting FLOPs at {height}x{width} (padded '
        f'{inputs.shape[-2]}x{inputs.shape[-1]})')
    if settings.backbone_only or timm_model:
        result['flops'] = None
        result['flops_by_module'] = None
        result['rois_per_image'] = None
    else:
        rois = []
        with record_rois(model, rois):  # the FLOP count traces (i.e. runs) the forward once
            flops, by_module, unsupported = count_flops(forward, inputs)
        result['rois_per_image'] = rois[0] if rois else None
        result['flops'] = flops
        result['flops_by_module'] = top_level_flops(by_module)
        result['unsupported_ops'] = unsupported
    bb_flops, _, bb_unsupported = count_flops(model if timm_model else model.backbone, inputs)
    result['backbone_flops'] = bb_flops
    if timm_model:
        result['flops'] = bb_flops
    if settings.backbone_only or timm_model:
        result['unsupported_ops'] = bb_unsupported
    log(f'{prefix}: params {fmt_m(result["params"])}M (backbone {fmt_m(result["backbone_params"])}M)'
        f', GFLOPs {fmt_g(result["flops"])} (backbone {fmt_g(bb_flops)})')

    result['latency'] = {}
    if settings.backends:
        bs = settings.batch_sizes[0]
        if timm_model:
            x = timm_inputs(bs, height, width)
            make = _deploy_factory(model, settings.channel_multiple)
        else:
            x, samples = make_batch(model, scope, bs, height, width)
            forward = tensor_forward(model, samples, settings.backbone_only)
            if settings.backbone_only:
                make = _deploy_factory(model.backbone, settings.channel_multiple)
            else:
                make = _deploy_factory(forward, settings.channel_multiple, detector=model,
                                       rebuild=lambda m: tensor_forward(m, samples, False))
        with torch.no_grad():
            reference_out = forward(x) if not timm_model else model(x)
        runners, errors = build_runners(make, x, settings, state['tmp_dir'], label)
        result['backends'] = {k: dict(error=v) for k, v in errors.items()}
        result['output_max_abs'] = max(float(abs(o).max()) for o in _flat(reference_out))
        state['runners'].append((result, runners, reference_out))
    elif settings.runs > 0:
        for device in devices:
            model.to(device)
            per_bs = {}
            for bs in settings.batch_sizes:
                if timm_model:
                    inputs = timm_inputs(bs, height, width).to(device)
                    forward = model
                else:
                    inputs, samples = make_batch(model, scope, bs, height, width)
                    forward = tensor_forward(model, samples, settings.backbone_only)
                log(f'{prefix}: timing {device} batch {bs} ({settings.warmup} warm-up + '
                    f'{settings.runs} runs)')
                stats = time_forward(forward, inputs, settings.runs, settings.warmup, device)
                per_bs[str(bs)] = stats
                log(f'{prefix}: {device} batch {bs}: {stats["median_ms"]:.1f} ms, '
                    f'{stats["images_per_s"]:.2f} img/s')
                del inputs, forward
            result['latency'][device] = per_bs
            model.to('cpu')
            if device == 'cuda':
                torch.cuda.empty_cache()
    result['measure_seconds'] = round(time.time() - t0, 1)
    del model
    gc.collect()
    return result


def time_backends(state, settings: Settings) -> None:
    """Warm every runner up, then time them round-robin; fill ``result['backends']``."""
    import torch
    all_runners = [(result, r) for result, runners, _ in state['runners'] for r in runners]
    log(f'backends: {len(all_runners)} paths, {settings.warmup} warm-up runs each, then '
        f'{settings.runs} timed runs round-robin')
    outputs = {}
    for result, r in all_runners:
        t0 = time.time()
        try:
            with torch.no_grad():
                out = r.call()
                for _ in range(max(settings.warmup - 1, 0)):
                    r.call()
            outputs[id(r)] = out
        except Exception as e:  # noqa: B902
            result['backends'][r.key] = dict(error=f'{type(e).__name__}: {e}'.splitlines()[0][:300])
            log(f'{result["label"]}: {r.key} failed: {result["backends"][r.key]["error"]}')
        else:
            log(f'{result["label"]}: {r.key} warm ({time.time() - t0:.1f} s)')
    live = [(res, r) for res, r in all_runners if id(r) in outputs]
    times = {id(r): [] for _, r in live}
    cpu = {id(r): [] for _, r in live}
    for i in range(settings.runs):
        for _, r in live:
            start, cpu_start = time.perf_counter(), time.process_time()
            r.call()
            times[id(r)].append((time.perf_counter() - start) * 1000.0)
            cpu[id(r)].append((time.process_time() - cpu_start) * 1000.0)
        log(f'backends: round {i + 1}/{settings.runs} done (load {os.getloadavg()[0]:.1f})')
    refs = {id(res): ref for res, _, ref in state['runners']}
    for result, r in live:
        entry = dict(backend=r.backend, deploy=r.deploy, precision=r.precision, info=r.info,
                     parity_max_abs=max_abs_diff(outputs[id(r)], refs[id(result)]))
        if times[id(r)]:
            entry.update(_stats(times[id(r)], settings.batch_sizes[0], settings.runs, settings.warmup))
            # CPU time of the whole process per call (all threads): less sensitive to other jobs
            entry['cpu_median_ms'] = statistics.median(cpu[id(r)])
            entry['cpu_times_ms'] = cpu[id(r)]
        result['backends'][r.key] = entry


def summarise_backends(report, tolerance: float) -> None:
    """Ratios to the reference per column, best fp32 path per model and its ratio."""
    models = report['models']
    ref = next((m for m in models if m.get('reference')), None)
    for m in models:
        paths = m.get('backends') or {}
        best = None
        for key, e in paths.items():
            if e.get('precision') != 'fp32' or 'median_ms' not in e:
                continue
            if not e['parity_max_abs'] <= tolerance:
                continue
            if best is None or e['median_ms'] < paths[best]['median_ms']:
                best = key
        m['best_fp32'] = None if best is None else dict(key=best, median_ms=paths[best]['median_ms'])
        for key, e in paths.items():
            r = (ref or {}).get('backends', {}).get(key, {})
            e['ratio'] = e['median_ms'] / r['median_ms'] if 'median_ms' in e and 'median_ms' in r else None
    for m in models:
        b, rb = m.get('best_fp32'), (ref or {}).get('best_fp32')
        m['best_ratio'] = b['median_ms'] / rb['median_ms'] if b and rb else None
        # the ratio of each runtime alone, deploy form or not: its best fp32 path vs the reference's
        per_backend = {}
        for backend in BACKENDS:
            own = _best_of(m, backend, tolerance)
            theirs = _best_of(ref, backend, tolerance) if ref else None
            if own and theirs:
                per_backend[backend] = own / theirs
        m['backend_ratios'] = per_backend


def _best_of(m, backend: str, tolerance: float) -> Optional[float]:
    vals = [e['median_ms'] for e in (m.get('backends') or {}).values()
            if e.get('backend') == backend and e.get('precision') == 'fp32' and 'median_ms' in e
            and e['parity_max_abs'] <= tolerance]
    return min(vals) if vals else None


def evaluate(entry, settings: Settings):
    """COCO (or mmseg) metrics of a checkpoint through :func:`rexnet_backbones.engine.test`."""
    from .engine import test  # lazily: the OpenMMLab stack
    work_dir = osp.join(settings.work_dir, config_label(entry['spec']))
    # the checkpoint holds the whole model: no ImageNet init (and no download) is needed
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the table
        metrics = test(entry['path'], entry['checkpoint'], work_dir=work_dir,
                       cfg_options={'model.backbone.init_cfg': None})
    return {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float))}


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.lower().startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(devices):
    import torch
    from importlib import metadata
    versions = {}
    for dist in ('torch', 'torchvision', 'timm', 'mmengine', 'mmcv', 'mmdet', 'mmsegmentation',
                 'rexnet_backbones'):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    env = dict(
        date=datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
        python=platform.python_version(), platform=platform.platform(), versions=versions,
        cpu_model=cpu_model(), logical_cpus=os.cpu_count(),
        usable_cpus=len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None,
        torch_threads=torch.get_num_threads(), torch_interop_threads=torch.get_num_interop_threads(),
        load_average_start=list(os.getloadavg()) if hasattr(os, 'getloadavg') else None,
        devices=devices, cuda_available=torch.cuda.is_available(),
        cuda_version=torch.version.cuda, cuda_device=None)
    if 'cuda' in devices:
        env['cuda_device'] = torch.cuda.get_device_name(0)
        env['cudnn_version'] = torch.backends.cudnn.version()
        env['cudnn_benchmark'] = torch.backends.cudnn.benchmark
    return env


def fmt_m(n):
    return '-' if n is None else f'{n / 1e6:.2f}'


def fmt_g(n):
    if n is None:
        return '-'
    g = n / 1e9
    return f'{g:.1f}' if g >= 10 else f'{g:.2f}'


def fmt_ms(v):
    return '-' if v is None else (f'{v:.1f}' if v >= 10 else f'{v:.2f}')


def fmt_ips(v):
    return '-' if v is None else (f'{v:.1f}' if v >= 100 else f'{v:.2f}')


METRIC_COLUMNS = [('bbox_mAP', 'bbox mAP'), ('segm_mAP', 'mask mAP'), ('mIoU', 'mIoU')]


def machine_line(report) -> str:
    env = report['environment']
    threads = env['torch_threads']
    cpu = (f'CPU: {env["cpu_model"]}, {env["usable_cpus"] or env["logical_cpus"]} usable logical '
           f'CPUs, torch {env["versions"]["torch"]} with {threads} thread{"s" if threads > 1 else ""}')
    if env.get('load_average_start'):
        cpu += f' (load average {env["load_average_start"][0]:.1f} at start)'
    parts = [cpu]
    if env.get('cuda_device'):
        parts.append(f'GPU: {env["cuda_device"]} (CUDA {env["cuda_version"]})')
    return '; '.join(parts)


def markdown(report) -> str:
    s = report['settings']
    devices = s['devices'] if s['runs'] > 0 and not s.get('backends') else []
    bss = s['batch_sizes']
    bb_only = s['backbone_only']
    headers = ['model', 'detector', 'backbone']
    if not bb_only:
        headers += ['params (M)']
    headers += ['backbone params (M)']
    if not bb_only:
        headers += ['GFLOPs']
    headers += ['backbone GFLOPs']
    for dev in devices:
        name = dev.upper()
        headers += [f'{name} latency bs{b} (ms)' for b in bss]
        headers += [f'{name} img/s bs{b}' for b in bss]
    metrics_present = [(key, title) for key, title in METRIC_COLUMNS
                       if any(any(k.endswith(key) for k in (m.get('metrics') or {}))
                              for m in report['models'])]
    headers += [title for _, title in metrics_present]

    rows = []
    for m in report['models']:
        row = [m['label'] + (' (mmdet)' if m['baseline'] else ''), m['model_type'], m['backbone']]
        if not bb_only:
            row.append(fmt_m(m['params']))
        row.append(fmt_m(m['backbone_params']))
        if not bb_only:
            row.append(fmt_g(m['flops']))
        row.append(fmt_g(m['backbone_flops']))
        for dev in devices:
            lat = m['latency'].get(dev, {})
            row += [fmt_ms(lat.get(str(b), {}).get('median_ms')) for b in bss]
            row += [fmt_ips(lat.get(str(b), {}).get('images_per_s')) for b in bss]
        for key, _ in metrics_present:
            vals = [v for k, v in (m.get('metrics') or {}).items() if k.endswith(key)]
            if m.get('metrics_error'):
                row.append('error')
            else:
                row.append(f'{vals[0]:.3f}' if vals else '-')
        rows.append(row)

    h, w = s['input_size']
    padded = {tuple(m['padded_input_shape']) for m in report['models']}
    padded_txt = ', '.join(f'{a}x{b}' for a, b in sorted(padded))
    lines = [
        f'Measured on {machine_line(report)}; {report["environment"]["date"][:10]}.',
        '',
        f'Input {h}x{w} (padded to {padded_txt}); GFLOPs for one image '
        f'({s["flops_convention"]}); latency = median of {s["runs"]} runs after {s["warmup"]} '
        f'warm-up runs, per batch; img/s = batch size / latency. Timed: {s["timed"]}.',
        '',
        '| ' + ' | '.join(headers) + ' |',
        '|' + '|'.join('---' if i < 3 else '---:' for i in range(len(headers))) + '|',
    ]
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return '\n'.join(lines) + '\n'


def _fmt_ratio(v):
    return '-' if v is None else f'{v:.2f}'


def _fmt_dev(v):
    if v is None:
        return '-'
    return 'inf' if not math.isfinite(v) else f'{v:.1e}'


def _column_keys(report) -> List[str]:
    keys: List[str] = []
    for m in report['models']:
        for key in (m.get('backends') or {}):
            if key not in keys:
                keys.append(key)
    order = {b: i for i, b in enumerate(BACKENDS)}

    def rank(key):
        base = key.split(' ')[0]
        backend = base.split('+')[0]
        return ('bf16' in key, '+deploy' in base, order.get(backend, 99))
    return sorted(keys, key=rank)


def markdown_backends(report) -> str:
    """The side-by-side backend table: one row per path, per model its ms and parity, then the
    ratio of each model to the reference (empty string when no backends were measured)."""
    s = report['settings']
    if not s.get('backends'):
        return ''
    keys = _column_keys(report)
    models = report['models']
    ref = next((m for m in models if m.get('reference')), None)
    others = [m for m in models if m is not ref]
    headers = ['path', 'precision']
    for m in models:
        name = m['label'] + (' (ref)' if m is ref else '')
        headers += [f'{name} ms', f'{name} parity']
    if ref is not None:
        headers += [f'{m["label"]} / ref' for m in others]
    rows = []
    for key in keys:
        entries = [(m.get('backends') or {}).get(key) for m in models]
        precision = next((e.get('info', {}).get('inference_precision') or e.get('precision')
                          for e in entries if e and 'precision' in e), '-')
        row = [key, precision]
        for e in entries:
            if e is None:
                row += ['-', '-']
            elif 'error' in e:
                row += ['error', '-']
            else:
                flag = '' if e['precision'] != 'fp32' or e['parity_max_abs'] <= s['tolerance'] else ' !'
                row += [fmt_ms(e.get('median_ms')), _fmt_dev(e['parity_max_abs']) + flag]
        if ref is not None:
            row += [_fmt_ratio(((m.get('backends') or {}).get(key) or {}).get('ratio')) for m in others]
        rows.append(row)
    best = ['**best fp32**', 'fp32']
    for m in models:
        b = m.get('best_fp32')
        best += [fmt_ms(b['median_ms']) if b else '-', b['key'] if b else '-']
    if ref is not None:
        best += [_fmt_ratio(m.get('best_ratio')) for m in others]
    rows.append(best)

    h, w = s['input_size']
    env = report['environment']
    end = (env.get('load_average_end') or [float('nan')])[0]
    lines = [
        f'Backends: batch {s["batch_sizes"][0]}, input {h}x{w}, {s["threads"]} threads; every path '
        f'{s["warmup"]} warm-up run(s), then {s["runs"]} timed runs round-robin over all paths '
        f'(ms = median). Load average {env["load_average_start"][0]:.1f} at start, {end:.1f} at the end.',
        '',
        f'parity = max |output - eager fp32 output| on the same input ("!": above {s["tolerance"]:g}, '
        'not eligible as best fp32); for bf16 rows it is the deviation from fp32. '
        f'ratio = model / reference ({ref["label"] if ref else "none"}) on the same path; the last row '
        'compares the best fp32 path of each model. "+deploy" = BN folded, ReXNet widths zero-padded '
        f'to multiples of {s["channel_multiple"]}, partial residual without cat '
        '(rexnet_backbones.deploy.fuse.deploy_model). OpenVINO: PERFORMANCE_HINT=LATENCY, the '
        "precision column is the compiled model's INFERENCE_PRECISION_HINT.",
    ]
    ratios = [f'{m["label"]}: ' + ', '.join(f'{b} {v:.2f}' for b, v in m['backend_ratios'].items())
              for m in others if m.get('backend_ratios')]
    if ratios:
        lines += ['', 'Best fp32 path of each runtime vs the reference on that runtime: '
                  + '; '.join(ratios) + '.']
    lines += ['', '| ' + ' | '.join(headers) + ' |',
              '|' + '|'.join('---' if i < 2 else '---:' for i in range(len(headers))) + '|']
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    errors = [f'{m["label"]} {k}: {e["error"]}' for m in models
              for k, e in (m.get('backends') or {}).items() if 'error' in e]
    if errors:
        lines += [''] + [f'- error: {e}' for e in errors]
    return '\n'.join(lines) + '\n'


def check_finite(report) -> None:
    for m in report['models']:
        for key in ('params', 'backbone_params', 'flops', 'backbone_flops'):
            v = m.get(key)
            if v is not None and (not math.isfinite(v) or v <= 0):
                log(f'warning: {m["label"]}: {key} = {v}')


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_outputs(report, out_json: Optional[str] = None, out_md: Optional[str] = None) -> str:
    """Write the JSON / markdown files; returns the markdown (both tables)."""
    table = markdown(report)
    extra = markdown_backends(report)
    if extra:
        table += '\n' + extra
    if out_json:
        os.makedirs(osp.dirname(osp.abspath(out_json)), exist_ok=True)
        with open(out_json, 'w', encoding='utf-8') as f:
            json.dump(_json_safe(report), f, indent=2)
            f.write('\n')
        log(f'wrote {out_json}')
    if out_md:
        os.makedirs(osp.dirname(osp.abspath(out_md)), exist_ok=True)
        with open(out_md, 'w', encoding='utf-8') as f:
            f.write(table)
        log(f'wrote {out_md}')
    return table


def run_benchmark(settings: Settings, argv: Optional[Sequence[str]] = None) -> Tuple[Dict[str, Any], int]:
    """Plan, build, measure (and evaluate) every model; returns the report and an exit status
    (0, or 1 when an evaluation failed). Raises :class:`BenchmarkError` for a bad request."""
    entries = plan(settings)
    import torch

    import rexnet_backbones  # noqa: F401  (registers type='ReXNet')

    cuda = torch.cuda.is_available()
    if settings.device == 'cuda' and not cuda:
        raise BenchmarkError('--device cuda: CUDA is not available')
    if settings.backends:
        devices = ['cpu']
    else:
        devices = [settings.device] if settings.device else (['cpu', 'cuda'] if cuda else ['cpu'])
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)

    report = dict(
        tool='tools/benchmark.py', argv=list(sys.argv[1:] if argv is None else argv),
        environment=environment(devices),
        settings=dict(input_size=list(settings.input_size), batch_sizes=list(settings.batch_sizes),
                      runs=settings.runs, warmup=settings.warmup, devices=devices,
                      backbone_only=settings.backbone_only, threads=torch.get_num_threads(),
                      timed=TIMED_BACKBONE if settings.backbone_only else TIMED,
                      flops_convention=FLOPS_NOTE, backends=list(settings.backends),
                      deploy=settings.deploy, precisions=list(settings.precisions),
                      channel_multiple=settings.channel_multiple, tolerance=settings.tolerance,
                      out_indices=list(settings.out_indices), reference=settings.reference),
        models=[])
    report['environment']['backend_versions'] = _backend_versions(settings.backends)
    what = (f'backends {", ".join(settings.backends)} (deploy {settings.deploy}) at batch '
            f'{settings.batch_sizes[0]}' if settings.backends else
            f'{", ".join(devices)}, batch sizes {list(settings.batch_sizes)}')
    log(f'{len(entries)} model(s) on {what}, input {settings.input_size[0]}x{settings.input_size[1]}, '
        f'{settings.warmup} warm-up + {settings.runs} timed runs, {torch.get_num_threads()} CPU threads')
    start = time.time()
    with tempfile.TemporaryDirectory(prefix='rexnet_benchmark_') as tmp_dir:
        state = dict(tmp_dir=tmp_dir, runners=[])
        for i, entry in enumerate(entries, 1):
            report['models'].append(measure(entry, settings, devices, i, len(entries), state))
        if settings.backends:
            time_backends(state, settings)
            del state
            gc.collect()
            summarise_backends(report, settings.tolerance)

    status = 0
    for entry, result in zip(entries, report['models']):
        result['checkpoint'] = entry['checkpoint']
        result['metrics'] = None
        if entry['checkpoint'] is None:
            continue
        log(f'{result["label"]}: evaluating {entry["checkpoint"]}')
        try:
            result['metrics'] = evaluate(entry, settings)
            log(f'{result["label"]}: {result["metrics"]}')
        except (Exception, SystemExit) as e:  # noqa: B902  (the test run exits on bad data)
            result['metrics_error'] = f'{type(e).__name__}: {e}'
            log(f'{result["label"]}: evaluation failed: {result["metrics_error"]}')
            status = 1

    report['environment']['load_average_end'] = \
        list(os.getloadavg()) if hasattr(os, 'getloadavg') else None
    report['total_seconds'] = round(time.time() - start, 1)
    check_finite(report)
    return report, status


def _backend_versions(backends) -> Dict[str, Optional[str]]:
    from importlib import metadata
    out = {}
    for dist in ('onnx', 'onnxruntime', 'openvino'):
        if any(b in dist for b in backends) or (dist == 'onnx' and any(b in GRAPH_BACKENDS for b in backends)):
            try:
                out[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                out[dist] = None
    return out
