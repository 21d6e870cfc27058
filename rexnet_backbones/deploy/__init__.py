"""Inference deployment: BN folding and the deploy form (``fuse``: ``fuse_bn``; ``form``: ``deploy_model``;
``pad``: zero-padded widths), ONNX export and verification (``onnx``), and mmdet/mmseg models that
run their network in ONNX Runtime or OpenVINO (``ort_model``), and post-training int8 quantization
(``quantize``, calibrated on images preprocessed by ``calibration``).

Everything here needs the optional deployment packages: ``pip install -e '.[deploy]'``; they (and
mmengine, for the ``ort_model`` part) are imported only when used.
"""
from __future__ import annotations

import importlib
from typing import Any

from .onnx import ExportResult, TensorMode, build_source_model, export_onnx, make_session, verify_onnx

__all__ = [
    'ExportResult', 'TensorMode', 'build_source_model',
    'export_onnx', 'make_session', 'verify_onnx', 'use_onnx_backend', 'ORTDetector',
    'ORTSegmentor',    'fuse_bn', 'deploy_model',
]

_ORT_MODEL_NAMES = ('use_onnx_backend', 'ORTDetector', 'ORTSegmentor')
_LAZY = {'fuse_bn': 'fuse', 'deploy_model': 'form'}


def __getattr__(name: str) -> Any:
    # lazy: ort_model needs mmengine; fuse is imported only when used
    if name in _ORT_MODEL_NAMES:
        return getattr(importlib.import_module(f'{__name__}.ort_model'), name)
    if name in _LAZY:
        return getattr(importlib.import_module(f'{__name__}.{_LAZY[name]}'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
