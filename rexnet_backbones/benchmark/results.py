"""The typed results of a run and their JSON form (the keys of ``--out-json``)."""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

from .costs import Costs
from .roofline import MachinePeak, achieved_fraction
from .traffic import TRAFFIC_MODEL

__all__ = ['Timing', 'PathResult', 'BestPath', 'ModelResult', 'Environment', 'ReportSettings', 'Report',
           'json_safe']


@dataclass
class Timing:
    """Timed calls of one path: statistics in ms, throughput from the median."""
    median_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    stdev_ms: float
    images_per_s: float
    runs: int
    warmup: int
    times_ms: List[float]

    @classmethod
    def of(cls, times: List[float], batch: int, runs: int, warmup: int) -> 'Timing':
        median = statistics.median(times)
        return cls(median_ms=median, mean_ms=statistics.fmean(times), min_ms=min(times), max_ms=max(times),
                   stdev_ms=statistics.stdev(times) if len(times) > 1 else 0.0,
                   images_per_s=batch / (median / 1000.0), runs=runs, warmup=warmup, times_ms=times)


@dataclass
class PathResult:
    """One (backend, deploy form, precision) path of one model; ``error`` when it failed."""
    backend: str = ''
    deploy: bool = False
    precision: str = 'fp32'
    info: Dict[str, Any] = field(default_factory=dict)
    #: max |output - eager fp32 output| on the same input
    parity_max_abs: float = math.nan
    timing: Optional[Timing] = None
    #: CPU time of the whole process per call (all threads): less sensitive to other jobs
    cpu_times_ms: List[float] = field(default_factory=list)
    #: median ms / the reference model's on the same path
    ratio: Optional[float] = None
    error: Optional[str] = None

    @property
    def median_ms(self) -> Optional[float]:
        return None if self.timing is None else self.timing.median_ms

    def eligible(self, tolerance: float) -> bool:
        """A timed fp32 path within ``tolerance`` of eager fp32 (a candidate for "best fp32")."""
        return self.error is None and self.precision == 'fp32' and self.timing is not None \
            and self.parity_max_abs <= tolerance

    def to_json(self) -> Dict[str, Any]:
        if self.error is not None:
            return dict(error=self.error, ratio=self.ratio)
        out = dict(backend=self.backend, deploy=self.deploy, precision=self.precision, info=self.info,
                   parity_max_abs=self.parity_max_abs)
        if self.timing is not None:
            out.update(asdict(self.timing))
            out.update(cpu_median_ms=statistics.median(self.cpu_times_ms), cpu_times_ms=self.cpu_times_ms)
        out['ratio'] = self.ratio
        return out


@dataclass
class BestPath:
    """The fastest eligible fp32 path of a model."""
    key: str
    median_ms: float


@dataclass
class ModelResult:
    """Everything measured of one model."""
    label: str
    kind: str  # 'timm' or 'config'
    config: Optional[str]
    config_path: Optional[str]
    timm_model: Optional[str]
    out_indices: Optional[List[int]]
    baseline: bool
    scope: Optional[str]
    model_type: str
    backbone: str
    disabled_pretrained_init: List[str]
    reference: bool
    input_shape: List[int]
    padded_input_shape: List[int]
    costs: Optional[Costs] = None
    #: device -> batch size (str) -> timing, without ``backends``
    latency: Dict[str, Dict[str, Timing]] = field(default_factory=dict)
    #: column key (e.g. ``onnxruntime+deploy``, ``eager bf16``) -> path, with ``backends``
    backends: Optional[Dict[str, PathResult]] = None
    output_max_abs: Optional[float] = None
    measure_seconds: float = 0.0
    best_fp32: Optional[BestPath] = None
    best_ratio: Optional[float] = None
    backend_ratios: Dict[str, float] = field(default_factory=dict)
    checkpoint: Optional[str] = None
    metrics: Optional[Dict[str, float]] = None
    metrics_error: Optional[str] = None
    #: roofline time / measured time per CPU path (``cpu bs1``, or a backend column key)
    roofline_fractions: Dict[str, Optional[float]] = field(default_factory=dict)

    def fill_roofline_fractions(self, backend_batch: int) -> None:
        """:attr:`roofline_fractions` of every timed CPU path (a path at ``backend_batch`` images)."""
        roofline = self.costs.roofline if self.costs is not None else None
        if roofline is None:
            return
        for bs, timing in self.latency.get('cpu', {}).items():
            self.roofline_fractions[f'cpu bs{bs}'] = achieved_fraction(roofline.roofline_ms, timing.median_ms, int(bs))
        for key, path in (self.backends or {}).items():
            if path.median_ms is not None:
                self.roofline_fractions[key] = achieved_fraction(roofline.roofline_ms, path.median_ms, backend_batch)

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = dict(label=self.label, config=self.config, config_path=self.config_path)
        if self.kind == 'timm':
            out.update(timm_model=self.timm_model, out_indices=self.out_indices)
        out.update(baseline=self.baseline, scope=self.scope, model_type=self.model_type, backbone=self.backbone,
                   disabled_pretrained_init=self.disabled_pretrained_init)
        costs = self.costs.to_json() if self.costs is not None else {}
        out.update(params=costs.get('params'), backbone_params=costs.get('backbone_params'),
                   reference=self.reference, input_shape=self.input_shape,
                   padded_input_shape=self.padded_input_shape)
        out.update({k: v for k, v in costs.items() if k not in out})
        out['latency'] = {dev: {bs: asdict(t) for bs, t in per_bs.items()} for dev, per_bs in self.latency.items()}
        if self.backends is not None:
            out['backends'] = {key: p.to_json() for key, p in self.backends.items()}
            out['output_max_abs'] = self.output_max_abs
        out['measure_seconds'] = self.measure_seconds
        if self.backends is not None:
            out.update(best_fp32=asdict(self.best_fp32) if self.best_fp32 else None, best_ratio=self.best_ratio,
                       backend_ratios=self.backend_ratios)
        out['roofline_fractions'] = self.roofline_fractions
        out.update(checkpoint=self.checkpoint, metrics=self.metrics)
        if self.metrics_error is not None:
            out['metrics_error'] = self.metrics_error
        return out


@dataclass
class Environment:
    """The machine and software a run measured on."""
    date: str
    python: str
    platform: str
    versions: Dict[str, Optional[str]]
    cpu_model: str
    logical_cpus: Optional[int]
    usable_cpus: Optional[int]
    torch_threads: int
    torch_interop_threads: int
    load_average_start: Optional[List[float]]
    devices: List[str]
    cuda_available: bool
    cuda_version: Optional[str]
    cuda_device: Optional[str] = None
    #: cuDNN version and ``cudnn.benchmark``: in the JSON when timing on CUDA
    cudnn_version: Optional[int] = None
    cudnn_benchmark: Optional[bool] = None
    backend_versions: Dict[str, Optional[str]] = field(default_factory=dict)
    load_average_end: Optional[List[float]] = None
    #: ``mmengine.utils.dl_utils.collect_env()``: compilers, CUDA home, torch version (not its build string)
    collect_env: Dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        out = asdict(self)
        if 'cuda' not in self.devices:
            del out['cudnn_version'], out['cudnn_benchmark']
        return out


@dataclass
class ReportSettings:
    """The settings as run (the ``settings`` of the JSON)."""
    input_size: List[int]
    batch_sizes: List[int]
    runs: int
    warmup: int
    devices: List[str]
    backbone_only: bool
    threads: int
    timed: str
    flops_convention: str
    backends: List[str]
    deploy: str
    precisions: List[str]
    channel_multiple: int
    tolerance: float
    out_indices: List[int]
    reference: str
    traffic_model: str = TRAFFIC_MODEL
    #: int8 paths: the calibration folder (None: seeded random inputs) and the number of inputs
    calib: Optional[str] = None
    calib_images: int = 4


@dataclass
class Report:
    """A whole run: what ``--out-json`` holds and the tables are made of."""
    argv: List[str]
    environment: Environment
    settings: ReportSettings
    models: List[ModelResult] = field(default_factory=list)
    total_seconds: float = 0.0
    tool: str = 'tools/benchmark.py'
    #: the machine's measured peak and bandwidth (the roofline)
    machine: Optional[MachinePeak] = None
    #: the per-layer table of one model (``layers``); a :class:`.layers.LayerReport`
    layers: Optional[Any] = None

    @property
    def reference(self) -> Optional[ModelResult]:
        return next((m for m in self.models if m.reference), None)

    def to_json(self) -> Dict[str, Any]:
        out = dict(tool=self.tool, argv=self.argv, environment=self.environment.to_json(),
                   settings=asdict(self.settings), models=[m.to_json() for m in self.models],
                   total_seconds=self.total_seconds)
        if self.machine is not None:
            out['machine'] = self.machine.to_json()
        if self.layers is not None:
            out['layers'] = self.layers.to_json()
        return json_safe(out)


def json_safe(obj: Any) -> Any:
    """``obj`` with non-finite floats as strings (``"inf"``) and numpy scalars as Python numbers."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, 'item') and callable(obj.item) and getattr(obj, 'ndim', None) == 0:
        return json_safe(obj.item())
    return obj
