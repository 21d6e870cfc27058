"""State dicts: unwrap one from a checkpoint, compare it with a model, find the prefix its keys carry.

The vocabulary that :mod:`rexnet_backbones.convert` (official layout -> timm layout) and the weights loader
(:mod:`rexnet_backbones.weights`) share; it imports only torch and :mod:`rexnet_backbones.errors`.
:func:`check_state_dict` is the one comparison of a state_dict with a model: missing, unexpected and
shape-mismatched keys, raised as :class:`~rexnet_backbones.errors.CheckpointMismatchError` with the likely cause.
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import torch

from .errors import CheckpointMismatchError

__all__ = ['StateDict', 'common_prefix_hint', 'prefix_hint', 'prefix_advice', 'mismatch_error',
           'unwrap_state_dict', 'check_state_dict']

StateDict = Dict[str, torch.Tensor]

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


def prefix_advice(keys: Iterable[str], prefix: Optional[str] = None,
                  subject: str = 'the ReXNet keys') -> Optional[str]:
    """How to strip ``prefix`` (default: the :func:`common_prefix_hint` of ``keys``); None without a prefix."""
    prefix = prefix or common_prefix_hint(keys)
    if prefix is None:
        return None
    return (f"{subject} start with {prefix!r} (a detector/segmentor or wrapped checkpoint); strip it, e.g. "
            f"prefix={prefix!r} in init_cfg=dict(type='Pretrained', checkpoint=..., prefix={prefix!r}), "
            f"load_weights(..., prefix={prefix!r}) or the tools' --checkpoint-prefix {prefix}")


def mismatch_error(what: str, missing: Iterable[str] = (), unexpected: Iterable[str] = (),
                   mismatched: Iterable[Tuple[str, tuple, tuple]] = (),
                   hint: Optional[str] = None) -> CheckpointMismatchError:
    """:class:`~rexnet_backbones.errors.CheckpointMismatchError` headed ``what``; without a ``hint``, when keys
    are missing, the likely cause is the prefix (such as ``backbone.``) that the unexpected keys carry."""
    missing, unexpected = list(missing), list(unexpected)
    if hint is None and missing:
        hint = prefix_advice(unexpected)
    return CheckpointMismatchError(what, missing, unexpected, mismatched, hint)


def prefix_hint(keys: Iterable[str], own: Iterable[str]) -> Optional[str]:
    """The prefix that, stripped from ``keys``, gives most of the model's keys ``own``; None if none does.

    Works for any model (a ResNet detector's ``backbone.layer1...``); falls back to
    :func:`common_prefix_hint` for ReXNet layouts (e.g. an official file under ``backbone.``).
    """
    keys, own = list(keys), set(own)
    if own & set(keys):
        return None
    counts: Counter = Counter()
    for key in keys:
        parts = key.split('.')
        for i in range(1, len(parts)):
            if '.'.join(parts[i:]) in own:
                counts['.'.join(parts[:i]) + '.'] += 1
                break
    if counts:
        best, n = counts.most_common(1)[0]
        if n >= max(1, len(own) // 2):
            return best
    return common_prefix_hint(keys)


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


def check_state_dict(what: str, got: Mapping[str, torch.Tensor], expected_shapes: Mapping[str, Tuple[int, ...]],
                     *, strict: bool = True, hint: Optional[str] = None) -> Tuple[List[str], List[str]]:
    """The one state-dict diff: raise ``CheckpointMismatchError`` (headed ``what``) unless ``got`` has
    exactly the keys of ``expected_shapes`` with those shapes.

    The error lists missing, unexpected and mismatched keys and names the likely cause (``hint``, or the
    prefix such as ``backbone.`` that the keys carry). ``strict=False`` only refuses shape mismatches.
    Returns ``(missing, unexpected)``.
    """
    missing = [k for k in expected_shapes if k not in got]
    unexpected = [k for k in got if k not in expected_shapes]
    mismatched = [(k, tuple(got[k].shape), tuple(s)) for k, s in expected_shapes.items()
                  if k in got and tuple(got[k].shape) != tuple(s)]
    if mismatched or (strict and (missing or unexpected)):
        raise mismatch_error(what, missing, unexpected, mismatched, hint)
    return missing, unexpected
