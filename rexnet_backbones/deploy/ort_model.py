"""mmdet detectors and mmseg segmentors whose network runs in ONNX Runtime (or OpenVINO).

The ONNX file is the ``mode='tensor'`` export of :func:`rexnet_backbones.deploy.export_onnx`
(backbone + neck + head raw outputs). Everything around it stays in Python and is taken from the
original model config: the data preprocessor (normalisation, padding) and the post-processing,
i.e. mmdet's ``bbox_head.predict_by_feat`` (box decoding, NMS, rescaling) or mmseg's
``decode_head.predict_by_feat`` + ``postprocess_result``. So mmengine's ``Runner.test`` with the
dataset's own metric (``CocoMetric``, ``IoUMetric``) works unchanged::

    cfg = Config.fromfile('configs/det/retinanet_rexnet_synthetic.py')
    cfg = use_onnx_backend(cfg, 'retinanet.onnx')   # cfg.model -> ORTDetector
    Runner.from_cfg(cfg).test()

Supported: single-stage detectors (RetinaNet, SSD, FCOS, ...: a ``bbox_head``, no RPN/RoI head)
and ``EncoderDecoder`` segmentors with ``test_cfg.mode='whole'``.
"""
from __future__ import annotations

import copy
import os.path as osp
from typing import Any, Dict, List, Optional, Union

import torch
from mmengine.config import Config, ConfigDict
from mmengine.model import BaseModel
from mmengine.registry import MODELS

from .onnx import read_structure
from .runtime import BACKENDS, make_session, unflatten_outputs

__all__ = ['ORTDetector', 'ORTSegmentor', 'use_onnx_backend']

_MODULE = __name__
_TYPES = {'mmdet': 'ORTDetector', 'mmseg': 'ORTSegmentor'}


class _ONNXModel(BaseModel):
    """Base: holds the session and the original (PyTorch) model for pre- and post-processing."""

    def __init__(self, onnx_file: str, model: Dict[str, Any], backend: str = 'onnxruntime',
                 num_threads: Optional[int] = None, data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        model = copy.deepcopy(dict(model))
        # the Runner passes the config's top-level data_preprocessor as a default, as to any model
        if data_preprocessor is not None:
            model.setdefault('data_preprocessor', data_preprocessor)
        # the network weights come from the ONNX file: never fetch pretrained backbone weights
        if isinstance(model.get('backbone'), dict):
            model['backbone']['init_cfg'] = None
        # built for its data preprocessor and post-processing; its weights are never used
        self.torch_model = MODELS.build(model)
        self.data_preprocessor = self.torch_model.data_preprocessor
        self.onnx_file = onnx_file
        self.backend = backend
        self.session = make_session(onnx_file, backend, num_threads)
        self.structure = read_structure(onnx_file)
        self._check_model()

    def _check_model(self) -> None:
        raise NotImplementedError

    def init_weights(self) -> None:
        """Nothing to initialise: the weights are in the ONNX file."""

    def run_network(self, inputs: torch.Tensor) -> Any:
        """The raw outputs of the ONNX network, nested as the PyTorch model returns them."""
        outs = self.session.run(inputs)
        outs = [torch.from_numpy(o).to(inputs.device) for o in outs]
        return unflatten_outputs(outs, self.structure)

    def forward(self, inputs: torch.Tensor, data_samples: Optional[List[Any]] = None,
                mode: str = 'tensor') -> Any:
        if mode == 'tensor':
            return self.run_network(inputs)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'loss':
            raise RuntimeError(f'{type(self).__name__} runs an ONNX file: it can only be tested, not trained')
        raise RuntimeError(f"invalid mode {mode!r}; only 'tensor' and 'predict' are supported")

    def predict(self, inputs: torch.Tensor, data_samples: Optional[List[Any]]) -> List[Any]:
        raise NotImplementedError


@MODELS.register_module()
class ORTDetector(_ONNXModel):
    """A single-stage mmdet detector whose backbone + neck + head run from an ONNX file.

    Args:
        onnx_file: the ``mode='tensor'`` export of the detector.
        model: the detector's config (``cfg.model``): its data preprocessor, ``bbox_head``
            post-processing and ``test_cfg`` are used.
        backend: ``'onnxruntime'`` (CPU) or ``'openvino'`` (CPU, f32).
        num_threads: intra-op threads of the runtime (its default: all cores).
    """

    def _check_model(self) -> None:
        m = self.torch_model
        if not hasattr(m, 'bbox_head') or hasattr(m, 'roi_head') or hasattr(m, 'rpn_head'):
            raise ValueError(f'{type(self).__name__} supports single-stage detectors (a bbox_head, no RPN/RoI '
                             f'head), got {type(m).__name__}')

    def predict(self, inputs: torch.Tensor, data_samples: Optional[List[Any]]) -> List[Any]:
        if data_samples is None:
            raise ValueError("mode='predict' needs the data samples (image meta information)")
        outs = self.run_network(inputs)
        metas = [s.metainfo for s in data_samples]
        results = self.torch_model.bbox_head.predict_by_feat(*outs, batch_img_metas=metas, rescale=True)
        return self.torch_model.add_pred_to_datasample(data_samples, results)


@MODELS.register_module()
class ORTSegmentor(_ONNXModel):
    """An mmseg ``EncoderDecoder`` whose backbone + neck + decode head run from an ONNX file; the
    logits are resized and turned into label maps by mmseg's own code (``test_cfg.mode='whole'``).

    Args: as :class:`ORTDetector`, with ``model`` the segmentor's config.
    """

    def _check_model(self) -> None:
        m = self.torch_model
        decode_head = getattr(m, 'decode_head', None)
        if decode_head is None or not hasattr(decode_head, 'predict_by_feat'):
            raise ValueError(f'{type(self).__name__} supports EncoderDecoder segmentors, got {type(m).__name__}')
        mode = m.test_cfg.get('mode', 'whole') if m.test_cfg else 'whole'
        if mode != 'whole':
            raise ValueError(f"{type(self).__name__} supports test_cfg.mode='whole', got {mode!r}")

    def predict(self, inputs: torch.Tensor, data_samples: Optional[List[Any]]) -> List[Any]:
        if data_samples is not None:
            metas = [s.metainfo for s in data_samples]
        else:
            shape = inputs.shape[2:]
            metas = [dict(ori_shape=shape, img_shape=shape, pad_shape=shape, padding_size=[0, 0, 0, 0])
                     ] * inputs.shape[0]
        logits = self.run_network(inputs)
        seg_logits = self.torch_model.decode_head.predict_by_feat(logits, metas)
        return self.torch_model.postprocess_result(seg_logits, data_samples)


def use_onnx_backend(cfg: Union[Config, ConfigDict], onnx_file: str, backend: str = 'onnxruntime',
                     num_threads: Optional[int] = None) -> Union[Config, ConfigDict]:
    """Rewrite ``cfg`` (mmdet or mmseg, by ``default_scope``) so that ``Runner.from_cfg(cfg).test()``
    runs the network from ``onnx_file`` in ``backend`` and mmdet's / mmseg's post-processing and
    metrics in Python.

    ``cfg.model`` becomes ``ORTDetector`` / ``ORTSegmentor`` holding the original model config,
    ``cfg.load_from`` is cleared (the weights are in the ONNX file) and the module registering
    these types is added to ``custom_imports`` (so a dumped config works as well). Returns ``cfg``.
    """
    if backend not in BACKENDS:
        raise ValueError(f'unknown backend {backend!r}; choose one of {BACKENDS}')
    if not osp.isfile(onnx_file):
        raise FileNotFoundError(f'ONNX file not found: {onnx_file}')
    scope = cfg.get('default_scope', None)
    if scope not in _TYPES:
        raise ValueError(f"ONNX testing supports mmdet and mmseg configs (default_scope 'mmdet' or 'mmseg'), "
                         f'got default_scope={scope!r}')
    model = cfg.model
    if model.get('type') in _TYPES.values():
        raise ValueError(f'the config already runs an ONNX model ({model["type"]})')
    wrapped = dict(type=_TYPES[scope], onnx_file=osp.abspath(onnx_file), model=model, backend=backend)
    if num_threads:
        wrapped['num_threads'] = num_threads
    cfg.model = ConfigDict(wrapped)
    cfg.load_from = None
    cfg.resume = False
    imports = cfg.get('custom_imports', None) or dict(imports=[], allow_failed_imports=False)
    names = imports.get('imports', [])
    names = [names] if isinstance(names, str) else list(names)
    if _MODULE not in names:
        names.append(_MODULE)
    imports['imports'] = names
    cfg.custom_imports = imports
    return cfg
