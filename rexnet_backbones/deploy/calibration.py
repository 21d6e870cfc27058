"""Calibration inputs for int8 quantization: images from a folder, preprocessed as the model's own test
data are, into the array the exported network takes.

* timm models: timm's eval transform of the model's data config (resize, centre crop, normalise) at the
  export size (``timm.data.resolve_model_data_config`` + ``create_transform``).
* mmdet / mmseg configs: the config's test pipeline (``test_dataloader.dataset.pipeline``, without its
  ``LoadAnnotations`` steps: a calibration folder has no labels), then the model's ``data_preprocessor``
  in test mode (normalisation, channel order, padding), one image at a time, as ``tools/test.py`` feeds
  the network.
* :func:`resized_inputs`: the same normalisation on images resized to one fixed size (the benchmark's).
"""
from __future__ import annotations

import os
import os.path as osp
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..errors import InputNotFoundError, InvalidInputError

__all__ = ['IMAGE_SUFFIXES', 'find_images', 'calibration_inputs', 'resized_inputs']

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


def find_images(calib_dir: str, num_images: int) -> List[str]:
    """The first ``num_images`` image files under ``calib_dir`` (recursively, in sorted path order)."""
    if num_images < 1:
        raise InvalidInputError(f'--calib-images must be >= 1, got {num_images}')
    if not osp.isdir(calib_dir):
        raise InputNotFoundError(f'calibration folder not found: {calib_dir} (give --calib a folder of images, '
                                 'e.g. the val2017/ of rexnet-make-synthetic-data)')
    files = []
    for root, dirs, names in os.walk(calib_dir):
        dirs.sort()
        files += [osp.join(root, n) for n in sorted(names) if n.lower().endswith(IMAGE_SUFFIXES)]
        if len(files) >= num_images:
            break
    if not files:
        raise InputNotFoundError(f'no images in the calibration folder {calib_dir} (looked for '
                                 f'{", ".join(IMAGE_SUFFIXES)} files, recursively)')
    return files[:num_images]


def _unwrap(model: nn.Module) -> nn.Module:
    from .onnx import TensorMode
    return model.model if isinstance(model, TensorMode) else model


def _timm_transform(model: nn.Module, size: Tuple[int, int]) -> Callable[[str], torch.Tensor]:
    from PIL import Image
    from timm.data import create_transform, resolve_model_data_config
    data_cfg = resolve_model_data_config(model)
    data_cfg['input_size'] = (3, *size)
    transform = create_transform(**data_cfg, is_training=False)

    def load(path: str) -> torch.Tensor:
        with Image.open(path) as img:
            return transform(img.convert('RGB')).unsqueeze(0)
    return load


def _test_pipeline(cfg: Any) -> List[dict]:
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    pipeline = dataset.get('pipeline') or cfg.get('test_pipeline')
    if not pipeline:
        raise InvalidInputError('the config has no test pipeline (test_dataloader.dataset.pipeline or '
                                'test_pipeline) to preprocess the calibration images with')
    return [dict(t) for t in pipeline if 'LoadAnnotations' not in str(t.get('type'))]


def _mm_transform(model: nn.Module, cfg: Any, scope: str) -> Callable[[str], torch.Tensor]:
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope(scope):
        pipeline = Compose(_test_pipeline(cfg))
    preprocessor = model.data_preprocessor

    def load(path: str) -> torch.Tensor:
        with DefaultScope.overwrite_default_scope(scope):
            data = pipeline(dict(img_path=path, img_id=0))
        with torch.no_grad():
            out = preprocessor(dict(inputs=[data['inputs']], data_samples=[data['data_samples']]), False)
        return out['inputs']
    return load


def calibration_inputs(model: nn.Module, files: Sequence[str], input_size: Tuple[int, int], cfg: Any = None,
                       scope: Optional[str] = None,
                       fixed_size: Optional[Tuple[int, int]] = None) -> List[Any]:
    """``files`` preprocessed as the test data of ``model`` (an exported module: a timm model, or an mm model
    / its :class:`~rexnet_backbones.deploy.onnx.TensorMode` with ``cfg`` and ``scope``), as float32 arrays.

    ``input_size`` is the timm export size; ``fixed_size``: the ``(H, W)`` a file without dynamic spatial
    axes takes (an image that gives another size is an error naming it)."""
    if cfg is None:
        load = _timm_transform(model, input_size)
    else:
        load = _mm_transform(_unwrap(model), cfg, scope or cfg.get('default_scope', 'mmdet'))
    arrays = []
    for path in files:
        try:
            x = load(path)
        except Exception as e:  # noqa: B902  (an unreadable image names itself)
            raise InvalidInputError(f'cannot preprocess the calibration image {path}: {type(e).__name__}: {e}') from e
        if fixed_size is not None and tuple(x.shape[-2:]) != tuple(fixed_size):
            raise InvalidInputError(f'calibration image {path} gives a {x.shape[-2]} x {x.shape[-1]} input, but the '
                                    f'model is exported with a fixed {fixed_size[0]} x {fixed_size[1]} input')
        arrays.append(x.float().numpy())
    return arrays


def resized_inputs(model: nn.Module, files: Sequence[str], size: Tuple[int, int]) -> List[Any]:
    """``files`` resized to exactly ``size`` (H, W) and normalised as ``model`` expects: through the mm model's
    ``data_preprocessor`` (which has ``mean``/``std``), else with timm's data config of the model."""
    from PIL import Image
    import numpy as np
    preprocessor = getattr(_unwrap(model), 'data_preprocessor', None)
    arrays = []
    for path in files:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert('RGB').resize((size[1], size[0]), Image.BILINEAR))
        chw = torch.from_numpy(rgb.copy()).permute(2, 0, 1)
        if preprocessor is not None:  # the mm preprocessors take the loaded (BGR) image and convert it
            with torch.no_grad():
                x = preprocessor(dict(inputs=[chw.flip(0).contiguous()]), False)['inputs']
        else:
            from timm.data import resolve_model_data_config
            cfg = resolve_model_data_config(model)
            mean = torch.tensor(cfg['mean']).view(1, 3, 1, 1)
            std = torch.tensor(cfg['std']).view(1, 3, 1, 1)
            x = (chw.unsqueeze(0).float() / 255.0 - mean) / std
        arrays.append(x.float().numpy())
    return arrays
