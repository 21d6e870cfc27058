"""Inference deployment: BN folding (``fuse``), ONNX export and verification (``onnx``), and
mmdet/mmseg models that run their network in ONNX Runtime or OpenVINO (``ort_model``).

Everything here needs the optional deployment packages: ``pip install -e '.[deploy]'``; they (and
mmengine, for the ``ort_model`` part) are imported only when used.
"""
from __future__ import annotations

import importlib
from typing import Any

from .onnx import (DeployDependencyError, ExportResult, OnnxVerificationError, TensorMode,
                   build_source_model, export_onnx, make_session, verify_onnx)

__all__ = [
    'DeployDependencyError', 'ExportResult', 'OnnxVerificationError', 'TensorMode', 'build_source_model',
    'export_onnx', 'make_session', 'verify_onnx', 'use_onnx_backend', 'ORTDetector', 'ORTSegmentor',
    'fuse_bn',
]

_ORT_MODEL_NAMES = ('use_onnx_backend', 'ORTDetector', 'ORTSegmentor')


def __getattr__(name: str) -> Any:
    # lazy: ort_model needs mmengine, fuse is imported only when used
    if name in _ORT_MODEL_NAMES:
        return getattr(importlib.import_module(f'{__name__}.ort_model'), name)
    if name not in ('fuse', 'onnx', 'ort_model') and not name.startswith('_'):
        fuse = importlib.import_module(f'{__name__}.fuse')
        if hasattr(fuse, name):
            return getattr(fuse, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
