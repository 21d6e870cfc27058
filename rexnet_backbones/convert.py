"""Conversion of official clovaai/rexnet checkpoints to timm-format state_dicts.

The official models are one ``nn.Sequential`` (``features.N`` / ``features.N.out.M``) plus an
``output`` head whose classifier is a 1x1 conv. timm's ``RexNet`` and our ``RexNetLite`` have the same
order of layers under named modules, so the key map is derived from the model structure itself.
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from .archs import REXNET_ARCHS

__all__ = [
    'CheckpointMismatchError', 'official_key_map', 'unwrap_state_dict', 'is_official_layout',
    'detect_arch', 'convert_official_state_dict', 'to_timm_state_dict', 'check_state_dict',
    'common_prefix_hint', 'num_classes_of', 'convert_checkpoint_file',
]

StateDict = Dict[str, torch.Tensor]


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the requested ReXNet architecture.

    Lists the missing, unexpected and shape-mismatched keys; ``hint`` (by default: derived from the
    unexpected keys when keys are missing, see ``common_prefix_hint``) names the likely cause.
    """

    def __init__(self, what: str, missing: Iterable[str] = (), unexpected: Iterable[str] = (),
                 mismatched: Iterable[Tuple[str, tuple, tuple]] = (), hint: Optional[str] = None):
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)
        if hint is None and self.missing:
            hint = _prefix_advice(self.unexpected)
        self.hint = hint
        lines = [what]
        for title, items in (('missing keys', self.missing), ('unexpected keys', self.unexpected)):
            if items:
                lines.append(f'  {title} ({len(items)}): {", ".join(items[:8])}' + (' ...' if len(items) > 8 else ''))
        if self.mismatched:
            shown = '; '.join(f'{k}: checkpoint {tuple(a)} vs model {tuple(b)}' for k, a, b in self.mismatched[:8])
            more = ' ...' if len(self.mismatched) > 8 else ''
            lines.append(f'  shape mismatches ({len(self.mismatched)}): {shown}{more}')
        if hint:
            lines.append(f'  likely cause: {hint}')
        super().__init__('\n'.join(lines))


#: first key components of ReXNet state_dicts: timm/our layout (stem, features, head), official (features, output)
_ROOTS = ('stem', 'features', 'head', 'output')


def common_prefix_hint(keys: Iterable[str]) -> Optional[str]:
    """The prefix (such as ``'backbone.'``) in front of the ReXNet keys of a checkpoint, None if there is none.

    A detector/segmentor checkpoint holds the backbone under ``backbone.`` next to ``neck.``/``*_head.``
    keys; the prefix shared by the keys that contain a ReXNet layout (``stem.``, ``features.``, ``head.``,
    ``output.``) is returned when every such key has one.
    """
    prefixes: Counter = Counter()
    for key in keys:
        parts = key.split('.')
        for i, part in enumerate(parts[:-1]):
            if part in _ROOTS:
                prefixes['.'.join(parts[:i]) + '.' if i else ''] += 1
                break
    if not prefixes or '' in prefixes:
        return None
    return prefixes.most_common(1)[0][0]


def _prefix_advice(keys: Iterable[str]) -> Optional[str]:
    prefix = common_prefix_hint(keys)
    if prefix is None:
        return None
    return (f"the ReXNet keys start with {prefix!r} (a detector/segmentor or wrapped checkpoint); "
            f"strip it, e.g. prefix={prefix!r} in init_cfg=dict(type='Pretrained', checkpoint=..., "
            f"prefix={prefix!r}) or {{k[len({prefix!r}):]: v for k, v in sd.items() if k.startswith({prefix!r})}}")


def unwrap_state_dict(obj: object) -> StateDict:
    """Return the tensors of a raw state_dict, or of one wrapped under ``state_dict``/``model``,
    with any DataParallel/DDP ``module.`` prefix removed."""
    for _ in range(3):
        if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            for key in ('state_dict', 'model', 'model_state', 'module'):
                if isinstance(obj.get(key), Mapping):
                    obj = obj[key]
                    break
            else:
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointMismatchError('not a ReXNet checkpoint: expected a state_dict of tensors '
                                      '(raw, or under "state_dict"/"model")')
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise CheckpointMismatchError('not a ReXNet checkpoint: the file holds no tensors')
    if all(k.startswith('module.') for k in sd):
        sd = {k[len('module.'):]: v for k, v in sd.items()}
    return sd


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


def check_state_dict(what: str, got: Mapping[str, torch.Tensor],
                     expected_shapes: Mapping[str, Tuple[int, ...]]) -> None:
    """Raise ``CheckpointMismatchError`` (headed ``what``) unless ``got`` has exactly the keys of
    ``expected_shapes`` with those shapes; the error lists missing, unexpected and mismatched keys, and
    names the likely cause when the keys carry a prefix such as ``backbone.``."""
    missing = [k for k in expected_shapes if k not in got]
    unexpected = [k for k in got if k not in expected_shapes]
    mismatched = [(k, tuple(got[k].shape), tuple(s)) for k, s in expected_shapes.items()
                  if k in got and tuple(got[k].shape) != tuple(s)]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(what, missing, unexpected, mismatched)


_compare = check_state_dict  # old private name


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


def convert_checkpoint_file(src: str, dst: str, arch: Optional[str] = None, trusted: Optional[bool] = None,
                            verify: bool = True) -> Dict[str, object]:
    """Convert an official (or re-save a timm-format) ReXNet checkpoint file to a timm-format file.

    ``dst`` ending in ``.safetensors`` selects that format; an existing directory receives
    ``<dst>/<name of src>``. The file is written atomically (a new file gets the usual
    umask mode, a replaced one keeps its mode). Returns a summary (``dst``, ``arch``, ``layout``,
    ``tensors``, ``parameters``). Raises ``FileNotFoundError``, ``RuntimeError`` (unreadable or
    unsafe file) or :class:`CheckpointMismatchError` with what is wrong.
    """
    import os

    import timm

    from .checkpoint import safe_load, save_state_dict
    sd = unwrap_state_dict(safe_load(src, trusted=trusted))
    arch = arch or detect_arch(sd)
    known = timm.list_models('rexnet*')
    if arch not in known:
        raise CheckpointMismatchError(f'unknown arch {arch!r}; choose one of {known}')
    model = timm.create_model(arch, num_classes=num_classes_of(sd))
    out = to_timm_state_dict(sd, model)
    if verify:
        model.load_state_dict(out, strict=True)
    if os.path.isdir(dst):
        dst = os.path.join(dst, os.path.basename(src))
    folder = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(folder):
        from .cli import InputNotFoundError
        raise InputNotFoundError(f'cannot write {dst}: the folder {folder} does not exist (create it first)')
    save_state_dict(out, dst)
    stats = ('running_mean', 'running_var', 'num_batches_tracked')
    return dict(dst=dst, arch=arch, layout='official' if is_official_layout(sd) else 'timm-format',
                tensors=len(out), parameters=sum(v.numel() for k, v in out.items() if not k.endswith(stats)))
