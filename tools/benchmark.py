#!/usr/bin/env python
"""Downstream benchmark of detectors/segmentors built from configs: size, FLOPs, speed, accuracy.

    python tools/benchmark.py CONFIG [CONFIG ...] [--baselines] [--input-size H W]
                              [--batch-sizes B [B ...]] [--runs N] [--warmup W]
                              [--device {cpu,cuda}] [--threads N] [--backbone-only]
                              [--checkpoints CKPT [CKPT ...]] [--work-dir DIR]
                              [--out-json FILE] [--out-md FILE]

CONFIG is a config file or ``package::relative/path.py`` inside an installed OpenMMLab package
(e.g. ``mmdet::retinanet/retinanet_r18_fpn_1x_coco.py``). ``--baselines`` appends mmdet's own
RetinaNet ResNet-18, RetinaNet RegNetX-800MF, RetinaNet ResNet-50 and Faster R-CNN RegNetX-400MF
configs (see ``BASELINES``), measured the same way (a baseline also given as CONFIG is measured
once, labelled as a baseline).

Models are built from the configs with every ``Pretrained`` ``init_cfg`` (and ``pretrained=``)
removed, so nothing is downloaded; they are initialised by their own ``init_weights()`` after
``torch.manual_seed(0)``. Weights do not change speed or FLOPs, except for the number of RPN
proposals of two-stage detectors (the RoI head runs on them); it is recorded in the JSON.

What is reported per model (the JSON has all raw numbers and the environment):

* params: all parameters of the model as built from the config, and of ``model.backbone``.
* GFLOPs: ``mmengine.analysis.FlopAnalyzer`` (fvcore's counter: one multiply-add = one FLOP, the
  convention of mmdet's ``get_flops.py`` and of the papers) for one image of the given size, of
  exactly the call that is timed (see below), and of ``model.backbone`` alone on the same tensor.
  Element-wise ops (activations, additions) and ops such as NMS are not counted; the JSON lists them
  under ``unsupported_ops``.
* latency: for each batch size B, B random HxW images and their data samples (img_shape = HxW,
  scale 1) go through ``model.data_preprocessor`` ONCE (normalisation and padding to the size
  divisor, e.g. 800x1333 -> 800x1344: not timed). What is timed is then one call
  ``model(inputs, data_samples, mode='tensor')`` in eval mode under ``torch.no_grad()``: mmdet's
  ``_forward`` = backbone + neck + head outputs. For one-stage detectors (RetinaNet) that is the
  raw class/box maps without box decoding or NMS; for two-stage detectors it includes the RPN's
  proposal decoding + NMS (``rpn_head.predict``) and the RoI head on those proposals (box head on
  all of them, mask head on the first 100 RoIs of the batch, as mmdet's ``StandardRoIHead.forward``).
  For segmentors it is ``EncoderDecoder._forward`` (decode-head logits, no resizing). With
  ``--backbone-only`` it is ``model.backbone(inputs)``. After ``--warmup`` untimed calls, each of
  ``--runs`` calls is timed with ``time.perf_counter`` (on CUDA between ``torch.cuda.synchronize()``
  calls); latency = median per batch (ms), throughput = B / median latency (images/s). ``--runs 0``
  skips timing.
* devices: ``--device cpu`` or ``cuda``; by default CPU, and CUDA too when it is available.
  ``--threads N`` sets ``torch.set_num_threads`` for the CPU runs (default: torch's choice). On a
  machine shared with other jobs use ``--threads 1``: OpenMP threads that wait for a busy core make
  multi-threaded timings slow and erratic (the JSON records the load average before and after).
* accuracy (optional): with ``--checkpoints`` (one per CONFIG, ``none`` to skip one) each checkpoint
  is evaluated on the config's test set with tools/test.py (mmengine ``Runner.test``) and its metrics
  (``coco/bbox_mAP``, ``coco/segm_mAP``, ``mIoU``, ...) are added. Baselines get no checkpoint.

Output: a markdown table on stdout (headed by the machine it was measured on and the settings),
optionally written to ``--out-md``, and a JSON file (``--out-json``). Progress goes to stderr.
"""
import argparse
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
import time
import warnings

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

#: (label, config) of mmdet's own detectors added by --baselines
BASELINES = [
    ('RetinaNet R-18', 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'),
    ('RetinaNet RegNetX-800MF', 'mmdet::regnet/retinanet_regnetx-800MF_fpn_1x_coco.py'),
    ('RetinaNet R-50', 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'),
    ('Faster R-CNN RegNetX-400MF', 'mmdet::regnet/faster-rcnn_regnetx-400MF_fpn_ms-3x_coco.py'),
]

TIMED = ("model(inputs, data_samples, mode='tensor') in eval mode under torch.no_grad() on inputs "
         'already through model.data_preprocessor (not timed): backbone + neck + head outputs; '
         'one-stage detectors without box decoding/NMS, two-stage detectors with RPN proposals '
         '(decoding + NMS) and the RoI head on them. Median over the timed runs after the warm-up '
         'runs; throughput = batch size / median latency')
TIMED_BACKBONE = ('model.backbone(inputs) in eval mode under torch.no_grad() on inputs already '
                  'through model.data_preprocessor (not timed). Median over the timed runs after '
                  'the warm-up runs; throughput = batch size / median latency')
FLOPS_NOTE = ('mmengine.analysis.FlopAnalyzer (fvcore counting: 1 multiply-add = 1 FLOP), one image, '
              'the same call as timed; element-wise ops and NMS are not counted')


class BenchmarkError(Exception):
    """A problem with the command line (missing config, ...): reported without a traceback."""


def log(message: str) -> None:
    stamp = datetime.datetime.now().strftime('%H:%M:%S')
    print(f'[benchmark {stamp}] {message}', file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Params, GFLOPs, latency/throughput (and COCO metrics) of mmdet/mmseg configs',
        epilog='Configs may be files or package::path (e.g. mmdet::retinanet/'
        'retinanet_r18_fpn_1x_coco.py). See the module docstring for exactly what is timed.')
    parser.add_argument('configs', nargs='+', metavar='CONFIG', help='config files to benchmark')
    parser.add_argument('--baselines', action='store_true',
                        help="add mmdet's RetinaNet R-18 / RegNetX-800MF / R-50 and Faster R-CNN "
                        'RegNetX-400MF configs')
    parser.add_argument('--input-size', nargs=2, type=int, default=[800, 1333], metavar=('H', 'W'),
                        help='image height and width before padding (default: 800 1333)')
    parser.add_argument('--batch-sizes', nargs='+', type=int, default=[1, 4], metavar='B',
                        help='batch sizes to time (default: 1 4)')
    parser.add_argument('--runs', type=int, default=10,
                        help='timed runs per measurement; the median is reported (default: 10; '
                        '0 = no timing, params and FLOPs only)')
    parser.add_argument('--warmup', type=int, default=3, help='untimed runs before (default: 3)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default=None,
                        help='where to time (default: cpu, and cuda too when available)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch.set_num_threads for CPU runs (default: torch default)')
    parser.add_argument('--backbone-only', action='store_true',
                        help='measure model.backbone only (params, GFLOPs, latency)')
    parser.add_argument('--checkpoints', nargs='+', default=None, metavar='CKPT',
                        help='one checkpoint per CONFIG ("none" to skip one) to evaluate with '
                        "tools/test.py (the config's test set must exist)")
    parser.add_argument('--work-dir', default=osp.join('work_dirs', 'benchmark'),
                        help='work directory of the evaluations (default: work_dirs/benchmark)')
    parser.add_argument('--out-json', default=None, help='write all raw numbers to this JSON file')
    parser.add_argument('--out-md', default=None, help='also write the markdown table to this file')
    args = parser.parse_args(argv)
    if any(b < 1 for b in args.batch_sizes):
        parser.error('--batch-sizes must be positive')
    if args.runs < 0 or args.warmup < 0:
        parser.error('--runs and --warmup must be >= 0')
    if any(s < 1 for s in args.input_size):
        parser.error('--input-size must be positive')
    if args.threads is not None and args.threads < 1:
        parser.error('--threads must be >= 1')
    return args


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


def config_label(spec: str) -> str:
    return osp.splitext(osp.basename(spec.split('::')[-1]))[0]


def plan(args):
    """The list of models to measure; checks configs and checkpoints before anything is built."""
    baseline_labels = {resolve_config(spec): label for label, spec in BASELINES} \
        if args.baselines or any('::' in c for c in args.configs) else {}
    entries = []
    for spec in args.configs:
        path = resolve_config(spec)
        entries.append(dict(spec=spec, path=path, baseline=baseline_labels.get(path),
                            checkpoint=None))
    if args.checkpoints is not None:
        if len(args.checkpoints) != len(args.configs):
            raise BenchmarkError(
                f'--checkpoints: got {len(args.checkpoints)} checkpoint(s) for '
                f'{len(args.configs)} config(s); give exactly one per CONFIG, in the same order '
                '("none" for a config without one)')
        for entry, ckpt in zip(entries, args.checkpoints):
            if ckpt.lower() in ('none', '-'):
                continue
            if '://' not in ckpt and not osp.isfile(ckpt):
                raise BenchmarkError(f'checkpoint not found: {ckpt} (for {entry["spec"]})')
            entry['checkpoint'] = ckpt
    if args.baselines:
        seen = {e['path'] for e in entries}
        for label, spec in BASELINES:
            path = resolve_config(spec)
            if path not in seen:  # a baseline also given as CONFIG is measured once
                entries.append(dict(spec=spec, path=path, baseline=label, checkpoint=None))
    return entries


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
    median = statistics.median(times)
    return dict(median_ms=median, mean_ms=statistics.fmean(times), min_ms=min(times),
                max_ms=max(times), stdev_ms=statistics.stdev(times) if len(times) > 1 else 0.0,
                images_per_s=inputs.shape[0] / (median / 1000.0), runs=runs, warmup=warmup,
                times_ms=times)


def measure(entry, args, devices, index: int, total: int):
    import torch
    height, width = args.input_size
    label = entry['baseline'] or config_label(entry['spec'])
    prefix = f'[{index}/{total}] {label}'
    t0 = time.time()
    log(f'{prefix}: building {entry["spec"]}')
    cfg, scope, model, disabled = build_model(entry['path'])
    result = dict(
        label=label, config=entry['spec'], config_path=entry['path'],
        baseline=entry['baseline'] is not None, scope=scope,
        model_type=str(cfg.model.get('type')),
        backbone=describe_backbone(cfg.model.get('backbone', {})),
        disabled_pretrained_init=disabled,
        params=None if args.backbone_only else num_params(model),
        backbone_params=num_params(model.backbone))

    inputs, samples = make_batch(model, scope, 1, height, width)
    result['input_shape'] = [height, width]
    result['padded_input_shape'] = list(inputs.shape[-2:])
    forward = tensor_forward(model, samples, args.backbone_only)

    log(f'{prefix}: counting FLOPs at {height}x{width} (padded '
        f'{inputs.shape[-2]}x{inputs.shape[-1]})')
    if args.backbone_only:
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
    bb_flops, _, bb_unsupported = count_flops(model.backbone, inputs)
    result['backbone_flops'] = bb_flops
    if args.backbone_only:
        result['unsupported_ops'] = bb_unsupported
    log(f'{prefix}: params {fmt_m(result["params"])}M (backbone {fmt_m(result["backbone_params"])}M)'
        f', GFLOPs {fmt_g(result["flops"])} (backbone {fmt_g(bb_flops)})')

    result['latency'] = {}
    if args.runs > 0:
        for device in devices:
            model.to(device)
            per_bs = {}
            for bs in args.batch_sizes:
                inputs, samples = make_batch(model, scope, bs, height, width)
                forward = tensor_forward(model, samples, args.backbone_only)
                log(f'{prefix}: timing {device} batch {bs} ({args.warmup} warm-up + '
                    f'{args.runs} runs)')
                stats = time_forward(forward, inputs, args.runs, args.warmup, device)
                per_bs[str(bs)] = stats
                log(f'{prefix}: {device} batch {bs}: {stats["median_ms"]:.1f} ms, '
                    f'{stats["images_per_s"]:.2f} img/s')
                del inputs, samples, forward
            result['latency'][device] = per_bs
            model.to('cpu')
            if device == 'cuda':
                torch.cuda.empty_cache()
    result['measure_seconds'] = round(time.time() - t0, 1)
    del model
    gc.collect()
    return result


def evaluate(entry, args):
    """COCO (or mmseg) metrics of a checkpoint through tools/test.py's main (Runner.test)."""
    name = '_rexnet_tools_test'
    if name in sys.modules:
        test_tool = sys.modules[name]
    else:
        spec = importlib.util.spec_from_file_location(
            name, osp.join(osp.dirname(osp.abspath(__file__)), 'test.py'))
        test_tool = importlib.util.module_from_spec(spec)
        sys.modules[name] = test_tool
        spec.loader.exec_module(test_tool)
    work_dir = osp.join(args.work_dir, config_label(entry['spec']))
    argv = [entry['path'], entry['checkpoint'], '--work-dir', work_dir]
    # the checkpoint holds the whole model: no ImageNet init (and no download) is needed
    argv += ['--cfg-options', 'model.backbone.init_cfg=None']
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the table
        metrics = test_tool.main(argv)
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
    devices = s['devices'] if s['runs'] > 0 else []
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


def check_finite(report) -> None:
    for m in report['models']:
        for key in ('params', 'backbone_params', 'flops', 'backbone_flops'):
            v = m.get(key)
            if v is not None and (not math.isfinite(v) or v <= 0):
                log(f'warning: {m["label"]}: {key} = {v}')


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        entries = plan(args)
    except BenchmarkError as e:
        print(f'error: {e}', file=sys.stderr, flush=True)
        return 2

    if REPO_ROOT not in sys.path:  # run from a clone without `pip install -e .`
        sys.path.insert(0, REPO_ROOT)
    import torch
    import rexnet_backbones  # noqa: F401  (registers type='ReXNet')

    cuda = torch.cuda.is_available()
    if args.device == 'cuda' and not cuda:
        print('error: --device cuda: CUDA is not available', file=sys.stderr, flush=True)
        return 2
    devices = [args.device] if args.device else (['cpu', 'cuda'] if cuda else ['cpu'])
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    report = dict(
        tool='tools/benchmark.py', argv=list(sys.argv[1:] if argv is None else argv),
        environment=environment(devices),
        settings=dict(input_size=list(args.input_size), batch_sizes=list(args.batch_sizes),
                      runs=args.runs, warmup=args.warmup, devices=devices,
                      backbone_only=args.backbone_only, threads=torch.get_num_threads(),
                      timed=TIMED_BACKBONE if args.backbone_only else TIMED,
                      flops_convention=FLOPS_NOTE),
        models=[])
    log(f'{len(entries)} model(s) on {", ".join(devices)}, input {args.input_size[0]}x'
        f'{args.input_size[1]}, batch sizes {args.batch_sizes}, {args.warmup} warm-up + '
        f'{args.runs} timed runs, {torch.get_num_threads()} CPU threads')
    start = time.time()
    for i, entry in enumerate(entries, 1):
        report['models'].append(measure(entry, args, devices, i, len(entries)))

    status = 0
    for entry, result in zip(entries, report['models']):
        result['checkpoint'] = entry['checkpoint']
        result['metrics'] = None
        if entry['checkpoint'] is None:
            continue
        log(f'{result["label"]}: evaluating {entry["checkpoint"]}')
        try:
            result['metrics'] = evaluate(entry, args)
            log(f'{result["label"]}: {result["metrics"]}')
        except (Exception, SystemExit) as e:  # noqa: B902  (tools/test.py exits on bad data)
            result['metrics_error'] = f'{type(e).__name__}: {e}'
            log(f'{result["label"]}: evaluation failed: {result["metrics_error"]}')
            status = 1

    report['environment']['load_average_end'] = \
        list(os.getloadavg()) if hasattr(os, 'getloadavg') else None
    report['total_seconds'] = round(time.time() - start, 1)
    check_finite(report)
    table = markdown(report)
    if args.out_json:
        os.makedirs(osp.dirname(osp.abspath(args.out_json)), exist_ok=True)
        with open(args.out_json, 'w', encoding='utf-8') as f:
            json.dump(report, f, indent=2)
            f.write('\n')
        log(f'wrote {args.out_json}')
    if args.out_md:
        os.makedirs(osp.dirname(osp.abspath(args.out_md)), exist_ok=True)
        with open(args.out_md, 'w', encoding='utf-8') as f:
            f.write(table)
        log(f'wrote {args.out_md}')
    sys.stdout.write(table)
    sys.stdout.flush()
    log(f'done in {report["total_seconds"]:.0f} s')
    return status


if __name__ == '__main__':
    sys.exit(main())
