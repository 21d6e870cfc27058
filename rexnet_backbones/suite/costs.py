"""Costs of one suite model at the suite's input size, measured once per model and cached.

Params and FLOPs with ``mmengine.analysis.FlopAnalyzer`` (:mod:`rexnet_backbones.benchmark.costs`),
activations with ``mmengine.analysis.ActivationAnalyzer`` (output elements of convolutions and linear
layers: RegNet's runtime proxy), latency: the median of single-image CPU forwards (tensor mode).
"""
from __future__ import annotations

import os.path as osp
import warnings
from typing import Any, Dict, Sequence

from .jobs import write_json_atomic

__all__ = ['model_costs', 'cached_costs']


def model_costs(config: str, input_size: Sequence[int], runs: int = 5) -> Dict[str, Any]:
    """``params``, ``flops``, ``activations``, ``latency_ms``, ``input_size`` of ``config``'s model."""
    import torch
    from mmengine.analysis import ActivationAnalyzer

    from ..benchmark.costs import measure_costs
    from ..benchmark.measure import time_forward
    from ..benchmark.models import BuiltModel
    height, width = int(input_size[0]), int(input_size[1])
    built = BuiltModel.build(config, (1, 2, 3, 4), backbone_only=False)
    batch = built.batch(1, height, width)
    costs = measure_costs(built, batch)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter('ignore')
        analyzer = ActivationAnalyzer(batch.forward, (batch.inputs,))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        analyzer.tracer_warnings('none')
        activations = int(analyzer.total())
    timing = time_forward(batch.forward, batch.inputs, runs=runs, warmup=2, device='cpu')
    return dict(params=int(costs.params), flops=int(costs.flops), activations=activations,
                latency_ms=float(timing.median_ms), input_size=[height, width])


def cached_costs(work_dir: str, model: str, config: str, input_size: Sequence[int]) -> Dict[str, Any]:
    """``model_costs``, measured once per suite model (``<work_dir>/costs/<model>.json``)."""
    import json
    path = osp.join(work_dir, 'costs', f'{model}.json')
    if osp.isfile(path):
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    costs = model_costs(config, input_size)
    write_json_atomic(path, costs)
    return costs
