"""The one weights loader: read a checkpoint, unwrap it, pick a prefix, convert it, compare it, load it.

Every tool and model that loads weights goes through here: the timm entrypoints (``pretrained=True``),
the mm backbone's ``Pretrained`` init, :mod:`rexnet_backbones.sources` (export, rank analysis, the
benchmark). A checkpoint is

* a local file: a torch file read by :func:`~rexnet_backbones.checkpoint.safe_load` (weights-only unless
  trusted) or a ``.safetensors`` file; a raw state_dict, or one under ``state_dict``/``model`` (an mmengine
  checkpoint), with any DataParallel ``module.`` prefix;
* a timm hub tag (``timm/rexnet_100.nav_in1k``, ``rexnet_100.nav_in1k``, ``hf-hub:org/repo``): read from the
  Hugging Face cache (see :mod:`rexnet_backbones.hub`), downloaded by timm when online, and refused at once
  with the local-file alternative when offline.

Official clovaai files are converted to timm's layout on the fly (:mod:`rexnet_backbones.convert`).
:func:`check_state_dict` is the one comparison of a state_dict with a model: missing, unexpected and
shape-mismatched keys, raised as :class:`CheckpointMismatchError` with the likely cause.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn

__all__ = [
    'StateDict', 'CheckpointMismatchError', 'WeightsNotFoundError', 'LoadedWeights', 'unwrap_state_dict',
    'common_prefix_hint', 'prefix_hint', 'check_state_dict', 'is_hub_tag', 'check_weights_readable',
    'read_checkpoint', 'select_prefix', 'to_model_layout', 'load_weights',
]

StateDict = Dict[str, torch.Tensor]
Checkpoint = Union[str, 'os.PathLike[str]', Mapping[str, Any]]

#: names ending like this are files, never hub tags
FILE_SUFFIXES = ('.pth', '.pt', '.bin', '.safetensors', '.ckpt', '.pkl', '.onnx')
LOCAL_FILE_ADVICE = ('Give a local file instead (a timm-format or official clovaai .pth/.safetensors, or a '
                     "detector/segmentor checkpoint), e.g. init_cfg=dict(type='Pretrained', "
                     "checkpoint='path/to/file.pth') or --checkpoint path/to/file.pth")


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model (or the requested ReXNet architecture).

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


class WeightsNotFoundError(FileNotFoundError):
    """The weights a checkpoint names cannot be had: no such file, or a hub tag that is not cached while
    the hub is offline (or that has no weights). The message says what to give instead."""


@dataclass
class LoadedWeights:
    """What :func:`load_weights` loaded into a model."""
    checkpoint: str
    #: ``'official'`` (converted on the fly) or ``'as is'``
    layout: str
    prefix: Optional[str]
    loaded: List[str] = field(default_factory=list)
    #: model keys the checkpoint did not have / checkpoint keys the model does not have (``strict=False``)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ state dicts
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


def _prefix_advice(keys: Iterable[str], prefix: Optional[str] = None,
                   subject: str = 'the ReXNet keys') -> Optional[str]:
    prefix = prefix or common_prefix_hint(keys)
    if prefix is None:
        return None
    return (f"{subject} start with {prefix!r} (a detector/segmentor or wrapped checkpoint); strip it, e.g. "
            f"prefix={prefix!r} in init_cfg=dict(type='Pretrained', checkpoint=..., prefix={prefix!r}), "
            f"load_weights(..., prefix={prefix!r}) or the tools' --checkpoint-prefix {prefix}")


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
        raise CheckpointMismatchError(what, missing, unexpected, mismatched, hint)
    return missing, unexpected


# ------------------------------------------------------------------------------------------ reading
def _hub_model_name(checkpoint: str) -> Optional[str]:
    """timm model name (``'rexnet_100.nav_in1k'`` or ``'hf-hub:org/repo'``) of a hub tag; None for a
    file name (a known file suffix, or a path separator without a hub prefix)."""
    if checkpoint.lower().endswith(FILE_SUFFIXES):
        return None
    if checkpoint.startswith('hf-hub:'):
        repo = checkpoint[len('hf-hub:'):]
        return repo[len('timm/'):] if repo.startswith('timm/') else checkpoint
    if checkpoint.startswith(('timm/', 'timm:')):
        return checkpoint[len('timm/'):]
    if os.sep in checkpoint or (os.altsep and os.altsep in checkpoint) or '/' in checkpoint:
        return None
    import timm

    import rexnet_backbones  # noqa: F401  (our entrypoints)
    return checkpoint if timm.is_model(checkpoint.split('.')[0]) else None


def is_hub_tag(checkpoint: str) -> bool:
    """Whether ``checkpoint`` names timm hub weights rather than a file (an existing file wins)."""
    return not os.path.isfile(os.path.expanduser(str(checkpoint))) and _hub_model_name(str(checkpoint)) is not None


def _hub_source(name: str, checkpoint: str) -> Tuple[Optional[str], Optional[str]]:
    """``(cached file or None, hub repo id or None)`` of a hub tag, without any network access."""
    if name.startswith('hf-hub:'):
        repo_id: Optional[str] = name[len('hf-hub:'):]
    else:
        import timm
        cfg = timm.models.get_pretrained_cfg(name)
        if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
            raise WeightsNotFoundError(f'timm has no downloadable weights for {checkpoint!r}. {LOCAL_FILE_ADVICE}')
        repo_id = cfg.hf_hub_id
    if not repo_id:
        return None, None
    from .hub import resolve_hub_weights
    try:
        return resolve_hub_weights(repo_id), repo_id
    except FileNotFoundError:
        raise WeightsNotFoundError(f'the timm weights {checkpoint!r} are not in the Hugging Face cache and '
                                   f'HF_HUB_OFFLINE is set. {LOCAL_FILE_ADVICE}') from None


def check_weights_readable(checkpoint: str) -> str:
    """Cheap check, before any model is built, that ``checkpoint`` can be read; returns the local file
    (for a cached hub tag too) or the hub tag timm will download.

    Reads nothing but the file system and the hub cache. Raises :class:`WeightsNotFoundError` for a
    missing file or a hub tag that is not cached while offline (or has no weights), ``ValueError`` for a
    URL or an ONNX file.
    """
    checkpoint = str(checkpoint)
    path = os.path.expanduser(checkpoint)
    if checkpoint.startswith(('http://', 'https://')):
        raise ValueError(f'checkpoint {checkpoint!r}: URLs are not downloaded; download the file and give its '
                         'path, or give a timm hub tag such as timm/rexnet_100.nav_in1k')
    if os.path.isdir(path):
        raise WeightsNotFoundError(f'checkpoint {checkpoint!r} is a directory; give a checkpoint file')
    if os.path.isfile(path):
        if path.lower().endswith('.onnx'):
            raise ValueError(f'checkpoint {checkpoint!r} is an ONNX model, not PyTorch weights; give the '
                             '.pth/.safetensors file it was exported from')
        return path
    name = _hub_model_name(checkpoint)
    if name is None:
        raise WeightsNotFoundError(
            f'checkpoint file {checkpoint!r} does not exist (looked for {os.path.abspath(path)}): give an '
            'existing file (timm-format or official clovaai .pth/.safetensors, or a detector/segmentor '
            "checkpoint) or a timm hub tag such as 'timm/rexnet_100.nav_in1k'")
    cached, _ = _hub_source(name, checkpoint)
    return cached or checkpoint


def _read_file(path: str, trusted: Optional[bool]) -> StateDict:
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(path)
    from .checkpoint import safe_load
    return unwrap_state_dict(safe_load(path, trusted=trusted))


def read_checkpoint(checkpoint: Checkpoint, *, trusted: Optional[bool] = None) -> StateDict:
    """The tensors of a checkpoint: a local file, a timm hub tag, or an already loaded (possibly
    wrapped) state_dict; unwrapped, keys as stored (no conversion)."""
    if isinstance(checkpoint, Mapping):
        return unwrap_state_dict(checkpoint)
    checkpoint = str(checkpoint)
    found = check_weights_readable(checkpoint)
    if os.path.isfile(found):
        return _read_file(found, trusted)
    name = _hub_model_name(checkpoint)
    import timm
    try:  # online and not cached: timm downloads it
        model = timm.create_model(name, pretrained=True)
    except Exception as e:  # offline, unknown tag, ...
        raise WeightsNotFoundError(f'could not fetch the timm weights {checkpoint!r} ({type(e).__name__}: {e}). '
                                   f'Offline? {LOCAL_FILE_ADVICE}') from e
    return model.state_dict()


def select_prefix(state_dict: Mapping[str, torch.Tensor], prefix: Optional[str], what: str = 'checkpoint',
                  own: Iterable[str] = ()) -> StateDict:
    """The entries under ``prefix`` (``'backbone'`` or ``'backbone.'``), prefix removed; all entries
    when ``prefix`` is empty. Raises ``CheckpointMismatchError`` when no key has the prefix, naming the
    prefix the keys do have (``own``: the model's keys, for a better guess)."""
    if not prefix:
        return dict(state_dict)
    prefix = prefix if prefix.endswith('.') else prefix + '.'
    selected = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not selected:
        found = prefix_hint(state_dict, own) if own else common_prefix_hint(state_dict)
        raise CheckpointMismatchError(f'{what}: no key starts with prefix {prefix!r}'
                                      + (f'; its keys start with {found!r}: use prefix={found!r}' if found else ''))
    return selected


# ------------------------------------------------------------------------------------------ loading
def _is_rexnet(model: nn.Module) -> bool:
    return all(hasattr(model, a) for a in ('stem', 'features', 'head'))


def to_model_layout(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> StateDict:
    """``state_dict`` in ``model``'s key layout: a model may adapt checkpoints itself with an
    ``adapt_state_dict(state_dict)`` method (the mm backbone does); an official clovaai file is converted
    for a timm ReXNet; anything else is returned as is."""
    adapt = getattr(model, 'adapt_state_dict', None)
    if callable(adapt):
        return adapt(dict(state_dict))
    from .convert import convert_official_state_dict, is_official_layout
    if is_official_layout(state_dict):
        if not _is_rexnet(model):
            raise CheckpointMismatchError(f'an official ReXNet checkpoint cannot be loaded into '
                                          f'{type(model).__name__}: it holds a ReXNet classifier')
        return convert_official_state_dict(state_dict, model)
    return dict(state_dict)


def _name(model: nn.Module) -> str:
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    arch = getattr(model, 'arch', None)
    name = cfg.get('architecture') if isinstance(cfg, Mapping) else None
    return name or (f'{type(model).__name__}(arch={arch!r})' if isinstance(arch, str) else type(model).__name__)


def load_weights(model: nn.Module, checkpoint: Checkpoint, *, prefix: Optional[str] = None, strict: bool = True,
                 trusted: Optional[bool] = None, name: Optional[str] = None) -> LoadedWeights:
    """Load ``checkpoint`` (file, hub tag or state_dict; see the module docstring) into ``model``.

    ``prefix`` selects a sub-model (``'backbone.'`` of a detector checkpoint). The tensors are put into
    the model's layout (:func:`to_model_layout`: official files converted) and compared with the model
    (:func:`check_state_dict`): with ``strict`` every key must match, otherwise only the shapes of the
    common keys. ``trusted`` is passed to ``safe_load`` (None: ``REXNET_TRUST_CHECKPOINTS``); ``name``
    is how messages name the checkpoint (default: the file or tag; useful for an already read state_dict).
    Raises :class:`WeightsNotFoundError`, ``RuntimeError`` (unreadable or unsafe file) or
    :class:`CheckpointMismatchError` naming the keys and the likely cause.
    """
    label = name or ('state_dict' if isinstance(checkpoint, Mapping) else str(checkpoint))
    raw = read_checkpoint(checkpoint, trusted=trusted)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    sd = select_prefix(raw, prefix, label, own)
    from .convert import is_official_layout
    layout = 'official' if is_official_layout(sd) else 'as is'
    found = None if prefix else prefix_hint(sd, own)
    sd = to_model_layout(sd, model)
    missing, unexpected = check_state_dict(f'{label} does not fit {_name(model)}', sd, own, strict=strict,
                                           hint=_prefix_advice((), found, "the checkpoint's keys") if found else None)
    model.load_state_dict(sd, strict=strict)
    return LoadedWeights(label, layout, prefix, [k for k in sd if k in own], missing, unexpected)
