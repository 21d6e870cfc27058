"""Conversion of official clovaai/rexnet checkpoints to timm-format state_dicts (and files).

The official models are one ``nn.Sequential`` (``features.N`` / ``features.N.out.M``) plus an
``output`` head whose classifier is a 1x1 conv. timm's ``RexNet`` and our ``RexNetLite`` have the same
order of layers under named modules, so the key map is derived from the model structure itself.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from .archs import REXNET_ARCHS
from .state_dicts import StateDict, check_state_dict, unwrap_state_dict

__all__ = [
    'official_key_map', 'is_official_layout', 'detect_arch', 'convert_official_state_dict', 'to_timm_state_dict',
    'num_classes_of',
]

def is_official_layout(sd: Mapping[str, torch.Tensor]) -> bool:
    """True for the clovaai layout (``features.N.out.M`` blocks and an ``output`` head)."""
    return 'features.0.weight' in sd and any('.out.' in k for k in sd)


def _add(mapping: Dict[str, str], module: nn.Module, timm_prefix: str, official_prefix: str) -> None:
    for name in module.state_dict():
        mapping[f'{timm_prefix}.{name}'] = f'{official_prefix}.{name}'


def _add_conv_norm(mapping: Dict[str, str], cna: nn.Module, timm_prefix: str, official_prefix: str, idx: int) -> int:
    """Map a timm ConvNormAct onto official ``[conv, bn, (act)]`` entries; return the next index."""
    _add(mapping, cna.conv, f'{timm_prefix}.conv', f'{official_prefix}.{idx}')
    _add(mapping, cna.bn, f'{timm_prefix}.bn', f'{official_prefix}.{idx + 1}')
    has_act = not isinstance(getattr(cna.bn, 'act', nn.Identity()), nn.Identity)
    return idx + 2 + int(has_act)


def official_key_map(model: nn.Module) -> Dict[str, str]:
    """timm key -> official key for a ``RexNet`` or ``RexNetLite`` (backbone and head)."""
    mapping: Dict[str, str] = {}
    idx = _add_conv_norm(mapping, model.stem, 'stem', 'features', 0)
    blocks = list(model.features)
    for i, block in enumerate(blocks[:-1]):
        j, prefix = 0, f'features.{idx}.out'
        for name in ('conv_exp', 'conv_dw', 'se', 'act_dw', 'conv_pwl'):
            sub = getattr(block, name, None)
            if sub is None:
                continue
            if name == 'se':  # official SE: fc = [conv, bn, relu, conv, sigmoid]
                for t, o in (('fc1', 0), ('bn', 1), ('fc2', 3)):
                    _add(mapping, getattr(sub, t), f'features.{i}.se.{t}', f'{prefix}.{j}.fc.{o}')
                j += 1
            elif name == 'act_dw':
                j += 1
            else:
                j = _add_conv_norm(mapping, sub, f'features.{i}.{name}', prefix, j)
        idx += 1
    _add_conv_norm(mapping, blocks[-1], f'features.{len(blocks) - 1}', 'features', idx)
    head = model.head
    if hasattr(head, 'conv_head'):  # lite: output = [conv, bn, relu6, dropout, conv]
        for t, o in (('conv_head', 0), ('norm_head', 1), ('fc', 4)):
            for p in ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'):
                if t != 'norm_head' and p not in ('weight', 'bias'):
                    continue
                mapping[f'head.{t}.{p}'] = f'output.{o}.{p}'
    else:  # v1: output = [dropout, conv]
        mapping['head.fc.weight'], mapping['head.fc.bias'] = 'output.1.weight', 'output.1.bias'
    return mapping


def _is_classifier(key: str) -> bool:
    return key.startswith('head.fc.')


def convert_official_state_dict(sd: Mapping[str, torch.Tensor], model: nn.Module) -> StateDict:
    """Convert an official-layout state_dict for ``model``'s architecture.

    Every backbone key must be present with the model's shape; the classifier is converted as is
    (timm drops it when the model has a different number of classes).
    """
    sd = unwrap_state_dict(sd)
    mapping = official_key_map(model)
    inverse = {o: t for t, o in mapping.items()}
    model_sd = model.state_dict()
    expected = {o: tuple(model_sd[t].shape) for t, o in mapping.items() if t in model_sd and not _is_classifier(t)}
    head_keys = {o for t, o in mapping.items() if _is_classifier(t)}
    body = {k: v for k, v in sd.items() if k not in head_keys}
    check_state_dict(f'official checkpoint does not match {_arch_name(model)}', body, expected)
    out: StateDict = {}
    for k, v in sd.items():
        t = inverse[k]
        if _is_classifier(t) and t.endswith('weight') and v.ndim == 4:
            v = v.flatten(1)  # 1x1 conv classifier -> linear
        out[t] = v
    return out


def to_timm_state_dict(sd: object, model: nn.Module) -> StateDict:
    """timm-format weights for ``model`` from an official or a timm-format checkpoint (unwrapped)."""
    sd = unwrap_state_dict(sd)
    if is_official_layout(sd):
        return convert_official_state_dict(sd, model)
    model_sd = model.state_dict()
    expected = {k: tuple(v.shape) for k, v in model_sd.items() if not _is_classifier(k)}
    check_state_dict(f'checkpoint does not match {_arch_name(model)}',
             {k: v for k, v in sd.items() if not _is_classifier(k)}, expected)
    return dict(sd)


def _arch_name(model: nn.Module) -> str:
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    return cfg.get('architecture') or type(model).__name__


def _build_meta(arch: str, num_classes: int = 1000) -> nn.Module:
    import timm
    with torch.device('meta'):
        return timm.create_model(arch, num_classes=num_classes)


def _layout(arch: str, official: bool, num_classes: int) -> Dict[str, Tuple[int, ...]]:
    model = _build_meta(arch, num_classes)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if not official:
        return shapes
    mapping = official_key_map(model)
    out = {mapping[k]: s for k, s in shapes.items()}
    if 'output.1.weight' in out and len(out['output.1.weight']) == 2 and 'output.4.weight' not in out:
        out['output.1.weight'] = out['output.1.weight'] + (1, 1)
    if 'output.4.weight' in out:
        out['output.4.weight'] = out['output.4.weight'] + (1, 1)
    return out


def num_classes_of(sd: Mapping[str, torch.Tensor]) -> int:
    """Classifier size of a ReXNet state_dict (official or timm layout); 1000 when it has no classifier."""
    for k in ('output.4.bias', 'output.1.bias', 'head.fc.bias'):  # lite, v1, timm classifier
        if k in sd:
            return int(sd[k].shape[0])
    return 1000


def detect_arch(sd: object, candidates: Optional[List[str]] = None) -> str:
    """Name of the ReXNet architecture (timm name) whose layout the checkpoint matches exactly.

    Works for the official layout and for timm-format state_dicts. Raises
    ``CheckpointMismatchError`` naming the closest architecture and its differences.
    """
    sd = unwrap_state_dict(sd)
    official = is_official_layout(sd)
    num_classes = num_classes_of(sd)
    best: Optional[Tuple[int, str, Dict[str, Tuple[int, ...]]]] = None
    for arch in candidates or list(REXNET_ARCHS):
        layout = _layout(arch, official, num_classes)
        if set(layout) == set(sd) and all(tuple(sd[k].shape) == s for k, s in layout.items()):
            return arch
        score = len(set(layout) ^ set(sd)) + sum(
            tuple(sd[k].shape) != s for k, s in layout.items() if k in sd)
        if best is None or score < best[0]:
            best = (score, arch, layout)
    assert best is not None
    _, arch, layout = best
    kind = 'official' if official else 'timm-format'
    if len(set(layout) & set(sd)) < len(layout) // 2:
        kind = 'not a ReXNet checkpoint (neither the official nor the timm layout):'
        check_state_dict(f'{kind} compared with {arch}', sd, layout)
    check_state_dict(f'{kind} checkpoint matches no ReXNet architecture; closest is {arch}:', sd, layout)
    raise AssertionError('unreachable')
