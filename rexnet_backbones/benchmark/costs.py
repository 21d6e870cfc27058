"""Size and compute of a model: parameters and FLOPs with ``mmengine.analysis.FlopAnalyzer``
(fvcore's counter: one multiply-add = one FLOP) of exactly the call that is timed; activations
(``mmengine.analysis.ActivationAnalyzer``: the output elements of every conv and matmul, RegNet's
metric), bytes moved (:class:`.traffic.TrafficAnalyzer`) and the roofline time on this machine
(:mod:`.roofline`), per module and in total."""
from __future__ import annotations

import contextlib
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn

from .models import Batch, BuiltModel
from .roofline import LayerCost, Roofline, machine_peak, roofline_of
from .traffic import TrafficAnalyzer

__all__ = ['Costs', 'num_params', 'count_flops', 'top_level_flops', 'record_rois', 'measure_costs', 'layer_kind',
           'layer_costs']

#: FlopAnalyzer operators left out of the roofline's compute (folded into the conv before them)
FOLDED_OPS = ('batch_norm',)


@dataclass
class Costs:
    """Params and FLOPs of one model (FLOPs for one image)."""
    #: all parameters (None with ``backbone_only``)
    params: Optional[int]
    backbone_params: int
    #: FLOPs of the timed call (None with ``backbone_only``)
    flops: Optional[int]
    #: FLOPs per top-level part of a detector/segmentor (backbone, neck, heads)
    flops_by_module: Optional[Dict[str, int]]
    #: RoIs that reached a two-stage detector's RoI head in the counted call
    rois_per_image: Optional[int]
    backbone_flops: int
    #: ops the counter does not know, with their number of calls
    unsupported_ops: Dict[str, int]
    #: conv and matmul output elements of the timed call (ActivationAnalyzer; RegNet's "activations")
    activations: Optional[int] = None
    #: bytes the timed call moves under the traffic model (:data:`.traffic.TRAFFIC_MODEL`)
    bytes_moved: Optional[int] = None
    #: ops outside the traffic model, with their number of calls
    traffic_unsupported_ops: Dict[str, int] = field(default_factory=dict)
    #: the timed call at this machine's measured peak and bandwidth
    roofline: Optional[Roofline] = None
    #: each module's own costs (not in the JSON)
    layers: List[LayerCost] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        out = asdict(self)
        del out['layers']
        return out


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _quiet(analyzer: Any) -> Any:
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    return analyzer


def _flops(module: nn.Module, inputs: torch.Tensor) -> Tuple[int, Dict[str, Any], Dict[str, int],
                                                          Dict[str, Counter]]:
    """FlopAnalyzer on ``module(inputs)``: total, per module, uncounted ops, per module and operator."""
    from mmengine.analysis import FlopAnalyzer
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter('ignore')
        analyzer = _quiet(FlopAnalyzer(module, (inputs,)))
        total = int(analyzer.total())
        by_module = analyzer.by_module()
        unsupported = {k: int(v) for k, v in analyzer.unsupported_ops().items()}
        by_operator = {name: Counter(c) for name, c in analyzer.by_module_and_operator().items()}
    return total, by_module, unsupported, by_operator


def count_flops(module: nn.Module, inputs: torch.Tensor) -> Tuple[int, Dict[str, Any], Dict[str, int]]:
    """FlopAnalyzer on ``module(inputs)``: total, per module, uncounted ops."""
    return _flops(module, inputs)[:3]


def _is_se(module: nn.Module) -> bool:
    name = type(module).__name__
    return name.startswith('SE') or 'SEModule' in name or 'SqueezeExcit' in name


def layer_kind(module: nn.Module, in_se: bool = False) -> str:
    """What a module is in the per-layer summary: ``depthwise conv``, ``pointwise conv``, ``SE``, ``BN``,
    ``SiLU``, ...; a container's own ops (residual add, concat, ...) are ``other ops``."""
    if in_se or _is_se(module):
        return 'SE'
    if isinstance(module, nn.Conv2d):
        if module.groups > 1:
            return 'depthwise conv' if module.groups == module.in_channels else 'grouped conv'
        return 'pointwise conv' if tuple(module.kernel_size) == (1, 1) else 'full conv'
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return 'BN'
    if isinstance(module, (nn.SiLU, nn.ReLU6, nn.ReLU, nn.Sigmoid, nn.Hardswish, nn.Hardsigmoid, nn.GELU)):
        return type(module).__name__
    if isinstance(module, nn.Linear):
        return 'linear'
    if isinstance(module, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
                           nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)):
        return 'pool'
    return 'other ops (add, cat, ...)'


def _self_counts(per_module: Dict[str, Counter], children: Dict[str, List[str]]) -> Dict[str, int]:
    """Each module's own count: its total minus its direct children's totals."""
    total = {name: sum(c.values()) for name, c in per_module.items()}
    return {name: int(total.get(name, 0) - sum(total.get(c, 0) for c in kids)) for name, kids in children.items()}


def layer_costs(module: nn.Module, inputs: torch.Tensor,
                flops: Optional[Dict[str, Counter]] = None) -> Tuple[List[LayerCost], Dict[str, int]]:
    """Each module's own FLOPs (BN left out), bytes and activations for ``module(inputs)`` (traces of
    TrafficAnalyzer, ActivationAnalyzer and, unless its ``by_module_and_operator()`` is given as ``flops``,
    FlopAnalyzer), and the ops outside the traffic model."""
    from mmengine.analysis import ActivationAnalyzer
    modules = dict(module.named_modules())
    children = {name: [f'{name}.{c}' if name else c for c, _ in m.named_children()] for name, m in modules.items()}
    flops = {name: Counter(c) for name, c in (flops or _flops(module, inputs)[3]).items()}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter('ignore')
        for counter in flops.values():
            for op in FOLDED_OPS:
                counter.pop(op, None)
        traffic = _quiet(TrafficAnalyzer(module, (inputs,)))
        bytes_by_module = traffic.by_module_and_operator()
        unsupported = {k: int(v) for k, v in traffic.unsupported_ops().items()}
        acts = _quiet(ActivationAnalyzer(module, (inputs,))).by_module_and_operator()
    own = [_self_counts(counts, children) for counts in (flops, bytes_by_module, acts)]
    se = {name for name, m in modules.items() if _is_se(m)}
    layers = []
    for name, m in modules.items():
        in_se = any(name == s or name.startswith(s + '.') for s in se if s)
        layers.append(LayerCost(name=name, kind=layer_kind(m, in_se), flops=own[0][name], bytes=own[1][name],
                                activations=own[2][name]))
    return layers, unsupported


def top_level_flops(by_module: Dict[str, Any], prefix: str = 'model.') -> Dict[str, int]:
    """The counts of the direct children of ``prefix`` (e.g. ``backbone``, ``neck``, ``bbox_head``)."""
    out = {}
    for name, value in by_module.items():
        if name.startswith(prefix) and '.' not in name[len(prefix):]:
            out[name[len(prefix):]] = int(value)
    return out


@contextlib.contextmanager
def record_rois(model: nn.Module, seen: List[int]) -> Iterator[List[int]]:
    """Append the number of RoIs that reach a two-stage detector's box RoI extractor to ``seen``."""
    extractor = getattr(getattr(model, 'roi_head', None), 'bbox_roi_extractor', None)
    handle = None
    if extractor is not None:
        def hook(module: nn.Module, args: Tuple[Any, ...], output: Any) -> None:
            if len(args) > 1:
                seen.append(int(args[1].shape[0]))  # a traced size is a 0-dim tensor: int() it
        handle = extractor.register_forward_hook(hook)
    try:
        yield seen
    finally:
        if handle is not None:
            handle.remove()


def measure_costs(built: BuiltModel, batch: Batch) -> Costs:
    """Params, FLOPs, activations, bytes and roofline of ``built`` on one image (``batch`` of size 1):
    of the timed call, and the FLOPs of the backbone alone on the same tensor."""
    bb_flops, _, bb_unsupported, by_operator = _flops(built.backbone, batch.inputs)
    costs = Costs(params=None if built.backbone_only else num_params(built.model),
                  backbone_params=num_params(built.backbone), flops=None, flops_by_module=None,
                  rois_per_image=None, backbone_flops=bb_flops, unsupported_ops=bb_unsupported)
    timed = built.backbone
    if built.is_timm:
        costs.flops = bb_flops
    elif not built.backbone_only:
        rois: List[int] = []
        with record_rois(built.model, rois):  # the FLOP count traces (i.e. runs) the forward once
            flops, by_module, unsupported, by_operator = _flops(batch.forward, batch.inputs)
        costs.flops, costs.flops_by_module = flops, top_level_flops(by_module)
        costs.rois_per_image = rois[0] if rois else None
        costs.unsupported_ops = unsupported
        timed = batch.forward
    costs.layers, costs.traffic_unsupported_ops = layer_costs(timed, batch.inputs, by_operator)
    costs.activations = sum(layer.activations for layer in costs.layers)
    costs.bytes_moved = sum(layer.bytes for layer in costs.layers)
    costs.roofline = roofline_of(costs.layers, machine_peak())
    return costs
