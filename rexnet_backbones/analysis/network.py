"""Rank along a network: every block's output (and expand layers inside blocks), by forward hooks.

A model is a timm name (built with ``pretrained=False``) or an mmdet/mmseg config, whose
``model.backbone`` is built by :func:`rexnet_backbones.sources.build_source` (every ``Pretrained``
``init_cfg`` removed, so nothing is downloaded; a checkpoint is loaded by the weights loader).
Models run in eval mode; at random initialisation their BatchNorms use batch statistics
(:func:`batch_norm_stats`), since the stored ones (mean 0, variance 1) make them identities.

Which layers are collected:

* blocks: for timm models, the modules named by timm's own ``group_matcher()['blocks']`` patterns
  (the top-most module matching each pattern, e.g. ReXNet ``features.N``, ResNet ``layerS.B``,
  RegNet ``sS.bB``, MobileNetV2 ``blocks.S.B`` and ``conv_head``); for other models (OpenMMLab
  backbones) every non-container module that is an element of an ``nn.Sequential`` and holds at
  least two convolutions.
* expand layers: inside a block, the output of the first 1x1 ungrouped convolution that widens the
  block's input, taken after its normalisation and activation: the conv-norm-act module that wraps
  it, or the norm/activation modules that follow it in the block.

Rows of a layer's feature matrix are its (image, position) pairs, drawn at random with a fixed seed
(enough of them for ``rows_per_channel`` rows per channel where the images have that many positions);
columns are its channels. Every layer is measured centred and uncentred, and a layer with fewer than
``rows_per_channel`` rows per channel is flagged ``row_capped`` (:mod:`.estimators`). Tables and
figures: :mod:`.network_report`.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..errors import InputNotFoundError, InvalidInputError
from .estimators import (CENTRINGS, DEFAULT_RTOL, ESTIMATORS, ROWS_PER_CHANNEL, estimates_from_singular_values,
                         feature_matrix, is_row_capped, singular_values)

__all__ = ['batch_norm_stats', 'build_model', 'check_sources', 'find_layers', 'load_images', 'synthetic_images',
           'rank_profile', 'count_flops', 'count_macs', 'analyse_models']

_NORM_ACT_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.ReLU, nn.ReLU6, nn.SiLU,
                   nn.GELU, nn.Hardswish, nn.LeakyReLU, nn.ELU, nn.Sigmoid, nn.Tanh, nn.Identity)


def build_model(spec: str, checkpoint: Optional[str] = None, checkpoint_prefix: Optional[str] = None,
                seed: int = 0) -> Tuple[nn.Module, str]:
    """A timm model by name or a config's backbone, through :func:`rexnet_backbones.sources.build_source`;
    returns ``(model in eval mode, label)``.

    ``checkpoint``: any format the weights loader reads (timm-format or official file, hub tag, or a
    detector/segmentor checkpoint with ``checkpoint_prefix='backbone.'``), loaded and verified.
    """
    from ..sources import build_source, is_config_spec
    src = build_source(spec, checkpoint, checkpoint_prefix=checkpoint_prefix, backbone_only=is_config_spec(spec),
                       seed=seed)
    return src.model, src.label


def _num_convs(module: nn.Module) -> int:
    return sum(isinstance(m, nn.Conv2d) for m in module.modules())


def _block_names(model: nn.Module) -> List[str]:
    """Module names of the blocks, in registration order (see the module docstring)."""
    names = [n for n, _ in model.named_modules() if n]
    matcher = model.group_matcher(coarse=False) if hasattr(model, 'group_matcher') else None
    patterns: List[Tuple[str, Any]] = []
    if isinstance(matcher, dict) and matcher.get('blocks'):
        blocks = matcher['blocks']
        patterns = [(blocks, None)] if isinstance(blocks, str) else list(blocks)
    if patterns:
        groups: Dict[Any, List[str]] = {}
        for n in names:
            for k, (p, suffix) in enumerate(patterns):
                m = re.match(p, n)
                if m:
                    groups.setdefault((k, suffix if suffix is not None else m.groups()), []).append(n)
                    break
        out = []
        for members in groups.values():  # top-most matches; a group of siblings (conv_head|bn2): the last
            top = [n for n in members if not any(n.startswith(o + '.') for o in members)]
            out.append(top[-1])
        return sorted(out, key=names.index)
    modules = dict(model.named_modules())
    out = []
    for n in names:
        parent = modules[n.rsplit('.', 1)[0]] if '.' in n else model
        m = modules[n]
        if (isinstance(parent, nn.Sequential) and not isinstance(m, (nn.Sequential, nn.ModuleList))
                and _num_convs(m) >= 2 and not any(n.startswith(o + '.') for o in out)):
            out.append(n)
    return out


def _is_norm_or_act(m: nn.Module) -> bool:
    name = type(m).__name__.lower()
    return (isinstance(m, _NORM_ACT_TYPES) and not isinstance(m, nn.Identity)) or 'norm' in name or 'act' in name


def _expand_layer(block: nn.Module) -> Optional[str]:
    """Name (inside ``block``) of the module whose output is the block's expand layer, or None.

    The expand layer is the block's first convolution when it is 1x1, ungrouped and has more output
    than input channels; its output is taken after normalisation and activation.
    """
    convs = [(n, m) for n, m in block.named_modules() if isinstance(m, nn.Conv2d)]
    if len(convs) < 2:  # a single conv (e.g. a head conv) is a layer, not a block with an expand layer
        return None
    name, conv = convs[0]
    if not (conv.kernel_size == (1, 1) and conv.groups == 1 and conv.out_channels > conv.in_channels):
        return None
    parent_name, leaf = name.rsplit('.', 1) if '.' in name else ('', name)
    parent = block.get_submodule(parent_name) if parent_name else block
    children = list(parent.named_children())
    after = children[[n for n, _ in children].index(leaf) + 1:]
    if parent_name and any(_is_norm_or_act(m) for _, m in after):
        return parent_name  # a conv-norm-act wrapper (timm ConvNormAct, mmcv ConvModule)
    last = None
    for n, m in after:  # a bare conv followed by its norm/activation modules (timm InvertedResidual)
        if not _is_norm_or_act(m):
            break
        last = f'{parent_name}.{n}' if parent_name else n
    return last


def find_layers(model: nn.Module, expand: bool = True) -> List[Tuple[str, str]]:
    """``[(module name, kind)]`` with kind ``'block'`` or ``'expand'``, in module order."""
    out = []
    for b in _block_names(model):
        if expand:
            e = _expand_layer(model.get_submodule(b))
            if e is not None:
                out.append((f'{b}.{e}', 'expand'))
        out.append((b, 'block'))
    return out


def synthetic_images(num: int, size: Tuple[int, int], seed: int = 0) -> torch.Tensor:
    """``num`` images of standard-normal pixels (what a normalised random image looks like)."""
    return torch.randn(num, 3, *size, generator=torch.Generator().manual_seed(seed))


def load_images(folder: str, num: int, size: Tuple[int, int], mean: Sequence[float] = (0.485, 0.456, 0.406),
                std: Sequence[float] = (0.229, 0.224, 0.225)) -> torch.Tensor:
    """The first ``num`` images (sorted names, recursively) of ``folder``: shorter side resized to
    ``size / 0.875``, centre-cropped to ``size``, normalised."""
    import numpy as np
    from PIL import Image

    exts = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
    files = sorted(os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs if f.lower().endswith(exts))
    if not files:
        what = 'no images' if os.path.isdir(folder) else 'no such folder, so no images'
        raise InputNotFoundError(f'{what} ({", ".join(exts)}) under {folder}: give a folder of images, or leave '
                                 'out --images for synthetic ones')
    h, w = size
    out = []
    for f in files[:num]:
        img = Image.open(f).convert('RGB')
        scale = max(h, w) / 0.875 / min(img.size)
        img = img.resize((max(w, round(img.size[0] * scale)), max(h, round(img.size[1] * scale))), Image.BICUBIC)
        left, top = (img.size[0] - w) // 2, (img.size[1] - h) // 2
        a = np.asarray(img.crop((left, top, left + w, top + h)), dtype=np.float32) / 255.0
        out.append((torch.from_numpy(a).permute(2, 0, 1) - torch.tensor(mean)[:, None, None])
                   / torch.tensor(std)[:, None, None])
    return torch.stack(out)


@contextlib.contextmanager
def batch_norm_stats(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Within the context, every BatchNorm of ``model`` normalises with the batch's own statistics
    (train-mode BN) and leaves its stored statistics untouched; the rest of the model stays as it is.

    At random initialisation the stored statistics are mean 0 and variance 1, so eval-mode BN is an
    identity and nothing keeps the features' scale and mean in check; batch statistics give each
    channel zero mean and unit variance before its affine transform and activation, as trained
    running statistics roughly do.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] if enabled else []
    saved = [(m.training, m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone())
             for m in bns]
    try:
        for m in bns:
            m.train()
            m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
        yield
    finally:
        for m, (training, momentum, tracked) in zip(bns, saved):
            m.train(training)
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def rank_profile(model: nn.Module, images: torch.Tensor, estimators: Sequence[str] = ESTIMATORS,
                 center: bool = False, rtol: float = DEFAULT_RTOL, max_rows: int = 4096, batch_size: int = 16,
                 expand: bool = True, seed: int = 0, progress: Optional[str] = None,
                 bn_stats: str = 'running', rows_per_channel: int = ROWS_PER_CHANNEL, row_cap: int = 16384,
                 both_centrings: bool = True) -> List[Dict[str, Any]]:
    """Rank of every collected layer of ``model`` on ``images``; one dict per layer, in forward order:
    ``name``, ``kind``, ``channels``, ``stride``, ``rows`` (given to the SVD), ``rows_available``
    (image positions), ``row_capped`` (``rows < rows_per_channel * channels``), ``depth`` (relative,
    0..1), ``center``, the estimates under ``rank`` and their ratios to ``min(rows, channels)`` under
    ``rank_ratio`` (both for ``center``), and ``centred`` / ``uncentred`` (``{rank, rank_ratio}``;
    only the one of ``center`` when ``both_centrings=False``).

    Rows per layer: all its positions, at most ``max(max_rows, rows_per_channel * channels)`` and
    never more than ``row_cap`` (drawn at random, the same share from every batch); a layer stays
    row-capped only when the images have too few positions (more or larger images fix it) or
    ``row_cap`` is reached. ``bn_stats='batch'`` normalises with each batch's statistics (see
    :func:`batch_norm_stats`); ``'running'`` uses the stored ones (eval mode)."""
    if bn_stats not in ('running', 'batch'):
        raise ValueError(f"bn_stats must be 'running' or 'batch', got {bn_stats!r}")
    layers = find_layers(model, expand)
    if not layers:
        raise RuntimeError(f'no blocks found in {type(model).__name__}')
    batches = list(images.split(batch_size))
    store: Dict[str, Dict[str, Any]] = {}
    order: List[str] = []

    def hook(name: str, kind: str):
        def fn(_m, _inp, out):
            if isinstance(out, (tuple, list)):
                out = out[0]
            if name not in store:
                order.append(name)
                target = min(row_cap, max(max_rows, rows_per_channel * out.shape[-1 if out.dim() == 3 else 1]))
                store[name] = dict(name=name, kind=kind, parts=[], shape=tuple(out.shape), available=0,
                                   per_batch=math.ceil(target / len(batches)),
                                   gen=torch.Generator().manual_seed(seed + len(order)))
            rec = store[name]
            rec['available'] += out.numel() // out.shape[-1 if out.dim() == 3 else 1]
            rec['parts'].append(feature_matrix(out, rec['per_batch'], rec['gen']))
        return fn

    handles = [model.get_submodule(n).register_forward_hook(hook(n, k)) for n, k in layers]
    start = time.time()
    try:
        with torch.no_grad(), batch_norm_stats(model, bn_stats == 'batch'):
            for i, b in enumerate(batches):
                model(b)
                if progress:
                    print(f'[{progress}] forward {i + 1}/{len(batches)} ({time.time() - start:.1f}s)',
                          file=sys.stderr, flush=True)
    finally:
        for h in handles:
            h.remove()
    in_h = images.shape[-2]
    results = []
    for i, name in enumerate(order):
        results.append(_measure_layer(store.pop(name), in_h, i / max(1, len(order) - 1), estimators, center, rtol,
                                      rows_per_channel, both_centrings))
        if progress:
            r = results[-1]
            print(f"[{progress}] layer {i + 1}/{len(order)} {name} ({r['channels']} ch, {r['rows']} rows) "
                  f'{time.time() - start:.1f}s', file=sys.stderr, flush=True)
    return results


def _measure_layer(rec: Dict[str, Any], in_h: int, depth: float, estimators: Sequence[str], center: bool,
                   rtol: float, rows_per_channel: int, both_centrings: bool) -> Dict[str, Any]:
    """One layer's record of :func:`rank_profile` from the feature parts its hook collected."""
    a = torch.cat(rec['parts'])
    rows, channels = a.shape
    shape = rec['shape']
    layer = dict(name=rec['name'], kind=rec['kind'], channels=channels,
                 stride=int(round(in_h / shape[2])) if len(shape) == 4 else None,
                 rows=rows, rows_available=rec['available'],
                 row_capped=is_row_capped(rows, channels, rows_per_channel), depth=depth, center=center)
    primary = CENTRINGS[0] if center else CENTRINGS[1]
    for key in (CENTRINGS if both_centrings else (primary,)):
        est = estimates_from_singular_values(singular_values(a, key == 'centred'), a.shape, estimators, rtol)
        layer[key] = dict(rank=est, rank_ratio={k: v / min(rows, channels) for k, v in est.items()})
    layer.update(layer[primary])
    return layer


def count_flops(model: nn.Module, size: Tuple[int, int]) -> Tuple[int, Dict[str, int]]:
    """``mmengine.analysis.FlopAnalyzer`` (one multiply-add = one FLOP) of one image:
    ``(total, per module name)``."""
    from mmengine.analysis import FlopAnalyzer

    fa = FlopAnalyzer(model, (torch.zeros(1, 3, *size),))
    fa.unsupported_ops_warnings(False)
    fa.uncalled_modules_warnings(False)
    return int(fa.total()), {k: int(v) for k, v in fa.by_module().items()}


def count_macs(model: nn.Module, size: Tuple[int, int]) -> int:
    """Multiply-adds of the convolutions and linear layers for one image (pycls' FLOP count): one
    forward pass with hooks, far cheaper than :func:`count_flops` (which traces the model and also
    counts normalisation and pooling, a few percent more)."""
    total = 0

    def hook(m: nn.Module, _inp, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            total += out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    param = next(model.parameters(), None)
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *size, device=param.device if param is not None else 'cpu'))
    finally:
        for h in handles:
            h.remove()
    return total


def check_sources(specs: Sequence[str], checkpoints: Sequence[Optional[str]]) -> None:
    """Fail before any computation on a model name, config or checkpoint that does not exist."""
    import timm  # our timm models are registered: importing any module of the package ran its __init__

    from ..config_files import is_config_spec, resolve_config
    from ..weights import check_weights_readable
    if len(checkpoints) != len(specs):
        raise InvalidInputError(f'{len(checkpoints)} checkpoints for {len(specs)} models (one per model; '
                                '"none" keeps one at random init)')
    for spec, ckpt in zip(specs, checkpoints):
        if is_config_spec(spec):
            resolve_config(spec)  # ConfigNotFoundError names what is there
        elif not timm.is_model(spec):
            import difflib
            close = difflib.get_close_matches(spec, timm.list_models(), n=3)
            raise InvalidInputError(f'unknown model {spec!r}: not a timm model name nor a config (.py or '
                                    f'package::path.py)' + (f'; did you mean {", ".join(close)}?' if close else ''))
        if ckpt not in (None, 'none', ''):
            check_weights_readable(ckpt)


def analyse_models(specs: Sequence[str], checkpoints: Optional[Sequence[Optional[str]]] = None,
                   images: Optional[str] = None, num_images: int = 64, input_size: Tuple[int, int] = (224, 224),
                   estimators: Sequence[str] = ESTIMATORS, center: bool = False, rtol: float = DEFAULT_RTOL,
                   max_rows: int = 4096, expand: bool = True, seed: int = 0, checkpoint_prefix: Optional[str] = None,
                   progress: bool = False, bn_stats: str = 'auto', rows_per_channel: int = ROWS_PER_CHANNEL,
                   row_cap: int = 16384) -> List[Dict[str, Any]]:
    """:func:`rank_profile` (both centrings) and FLOPs of each model; one result dict per model (what rank.json holds).

    ``images``: a folder of images (ImageNet normalisation), or None for ``num_images`` standard-normal
    images from ``seed``; every model sees the same images.
    ``bn_stats``: ``'auto'`` (the default) normalises with batch statistics (:func:`batch_norm_stats`)
    at random initialisation and with the stored statistics when a checkpoint is loaded;
    ``'running'`` or ``'batch'`` force one.
    """
    checkpoints = list(checkpoints or [None] * len(specs))
    check_sources(specs, checkpoints)
    x = load_images(images, num_images, input_size) if images else synthetic_images(num_images, input_size, seed)
    results = []
    for k, (spec, ckpt) in enumerate(zip(specs, checkpoints)):
        ckpt = None if ckpt in (None, 'none', '') else ckpt
        start = time.time()
        model, label = build_model(spec, ckpt, checkpoint_prefix, seed)
        tag = f'{k + 1}/{len(specs)} {label}' if progress else None
        bn = bn_stats if bn_stats != 'auto' else ('running' if ckpt else 'batch')
        layers = rank_profile(model, x, estimators, center, rtol, max_rows, expand=expand, seed=seed, progress=tag,
                              bn_stats=bn, rows_per_channel=rows_per_channel, row_cap=row_cap)
        total, by_module = count_flops(model, input_size)
        results.append(dict(
            model=spec, label=label, checkpoint=ckpt, init='checkpoint' if ckpt else 'random',
            images=images or 'synthetic', num_images=int(x.shape[0]), input_size=list(input_size),
            center=center, bn_stats=bn, rtol=rtol, max_rows=max_rows, rows_per_channel=rows_per_channel,
            row_cap=row_cap, estimators=list(estimators), flops=total,
            flops_by_module={n: by_module.get(n, 0) for n, _ in find_layers(model, False)},
            seconds=round(time.time() - start, 2), layers=layers))
    return results
