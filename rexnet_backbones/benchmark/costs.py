"""Size and compute of a model: parameters and FLOPs with ``mmengine.analysis.FlopAnalyzer``
(fvcore's counter: one multiply-add = one FLOP) of exactly the call that is timed."""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn

from .models import Batch, BuiltModel

__all__ = ['Costs', 'num_params', 'count_flops', 'top_level_flops', 'record_rois', 'measure_costs']


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


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_flops(module: nn.Module, inputs: torch.Tensor) -> Tuple[int, Dict[str, Any], Dict[str, int]]:
    """FlopAnalyzer on ``module(inputs)``: total, per module, uncounted ops."""
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
    """Params and FLOPs of ``built`` on one image (``batch`` of size 1): of the timed call and of the
    backbone alone on the same tensor."""
    bb_flops, _, bb_unsupported = count_flops(built.backbone, batch.inputs)
    costs = Costs(params=None if built.backbone_only else num_params(built.model),
                  backbone_params=num_params(built.backbone), flops=None, flops_by_module=None,
                  rois_per_image=None, backbone_flops=bb_flops, unsupported_ops=bb_unsupported)
    if built.is_timm:
        costs.flops = bb_flops
    elif not built.backbone_only:
        rois: List[int] = []
        with record_rois(built.model, rois):  # the FLOP count traces (i.e. runs) the forward once
            flops, by_module, unsupported = count_flops(batch.forward, batch.inputs)
        costs.flops, costs.flops_by_module = flops, top_level_flops(by_module)
        costs.rois_per_image = rois[0] if rois else None
        costs.unsupported_ops = unsupported
    return costs
