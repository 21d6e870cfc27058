"""The plan of a run: which models are measured (baselines and the reference added), with their
checkpoints, all checked before anything is built."""
from __future__ import annotations

import importlib.util
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from .models import check_timm_name, config_label, is_config_spec, resolve_config
from .settings import BASELINES, GRAPH_BACKENDS, INSTALL_HINT, REFERENCE, Settings
from ..errors import BenchmarkError

__all__ = ['PlannedModel', 'plan']


@dataclass
class PlannedModel:
    """One model to measure, as planned (nothing built yet)."""
    spec: str
    kind: str  # 'timm' or 'config'
    #: the resolved config file (None for timm models)
    path: Optional[str] = None
    #: label of one of mmdet's :data:`BASELINES` configs
    baseline: Optional[str] = None
    checkpoint: Optional[str] = None
    reference: bool = False

    @property
    def label(self) -> str:
        """The model's name in the tables."""
        if self.kind == 'timm':
            return self.spec
        return self.baseline or config_label(self.spec)

    def same_model(self, spec: str) -> bool:
        """``spec`` names this model (the same timm name or the same config file)."""
        if self.kind == 'timm':
            return self.spec == spec
        return is_config_spec(spec) and self.path == resolve_config(spec)


def _planned(spec: str, baseline_labels: Dict[str, str]) -> PlannedModel:
    if not is_config_spec(spec):
        check_timm_name(spec)
        return PlannedModel(spec, 'timm')
    path = resolve_config(spec)
    return PlannedModel(spec, 'config', path, baseline_labels.get(path))


def plan(settings: Settings) -> List[PlannedModel]:
    """The list of models to measure; checks models, checkpoints and backends before anything is built."""
    settings.check()
    specs = list(settings.models)
    wants_baselines = settings.baselines or any('::' in c for c in specs) \
        or settings.reference not in ('auto', 'none')
    baseline_labels = {resolve_config(spec): label for label, spec in BASELINES} if wants_baselines else {}
    models = [_planned(spec, baseline_labels) for spec in specs]
    if settings.checkpoints is not None:
        _attach_checkpoints(models, settings.checkpoints)
    if settings.baselines:
        seen = {m.path for m in models}
        for label, spec in BASELINES:
            path = resolve_config(spec)
            if path not in seen:  # a baseline also given as MODEL is measured once
                models.append(PlannedModel(spec, 'config', path, label))
    _mark_reference(models, settings.reference, baseline_labels)
    _check_backends_installed(settings.backends, 'int8' in settings.precisions)
    if settings.calib is not None:  # a missing or empty folder stops the run before anything is built
        from ..deploy.calibration import find_images
        find_images(settings.calib, settings.calib_images)
    return models


def _attach_checkpoints(models: List[PlannedModel], checkpoints: Sequence[str]) -> None:
    if len(checkpoints) != len(models):
        raise BenchmarkError(
            f'--checkpoints: got {len(checkpoints)} checkpoint(s) for '
            f'{len(models)} config(s); give exactly one per CONFIG, in the same order '
            '("none" for a config without one)')
    for model, ckpt in zip(models, checkpoints):
        if ckpt.lower() in ('none', '-'):
            continue
        if model.kind != 'config':
            raise BenchmarkError(f'--checkpoints: {model.spec} is a timm model, not a config; '
                                 'give "none" for it')
        if '://' not in ckpt and not osp.isfile(ckpt):
            raise BenchmarkError(f'checkpoint not found: {ckpt} (for {model.spec})')
        model.checkpoint = ckpt


def _mark_reference(models: List[PlannedModel], reference: str, baseline_labels: Dict[str, str]) -> None:
    if reference == 'none':
        return
    if reference == 'auto':
        for model in models:
            if any(model.same_model(spec) for spec in REFERENCE
                   if model.kind == ('config' if is_config_spec(spec) else 'timm')):
                model.reference = True
                return
        return
    for model in models:
        if model.same_model(reference):
            model.reference = True
            return
    added = _planned(reference, baseline_labels)
    added.reference = True
    models.append(added)


def _check_backends_installed(backends: Sequence[str], int8: bool = False) -> None:
    graph = [b for b in backends if b in GRAPH_BACKENDS]
    needed = (['onnx'] if graph else []) + graph
    if int8 and graph and 'onnxruntime' not in needed:  # quantize_onnx
        needed.append('onnxruntime')
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise BenchmarkError(f'--backends {" ".join(graph)}: {", ".join(missing)} not installed; '
                             f'{INSTALL_HINT} installs onnx, onnxruntime and openvino')
