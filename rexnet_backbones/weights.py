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

Official clovaai files are converted to timm's layout on the fly (:mod:`rexnet_backbones.convert`);
:func:`convert_checkpoint_file` writes a converted file. The comparison with the model is
:func:`rexnet_backbones.state_dicts.check_state_dict`. The whole path from file to tensors is in
``docs/layers.md``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn

from .checkpoint import safe_load, save_state_dict
from .convert import (convert_official_state_dict, detect_arch, is_official_layout, num_classes_of,
                      to_timm_state_dict)
from .errors import CheckpointMismatchError, InputNotFoundError, WeightsNotFoundError
from .hub import resolve_hub_weights
from .state_dicts import StateDict, check_state_dict, common_prefix_hint, prefix_advice, prefix_hint, unwrap_state_dict

__all__ = [
    'LoadedWeights', 'is_hub_tag', 'check_weights_readable', 'read_checkpoint', 'select_prefix', 'to_model_layout',
    'load_weights', 'convert_checkpoint_file',
]

Checkpoint = Union[str, 'os.PathLike[str]', Mapping[str, Any]]

#: names ending like this are files, never hub tags
FILE_SUFFIXES = ('.pth', '.pt', '.bin', '.safetensors', '.ckpt', '.pkl', '.onnx')
LOCAL_FILE_ADVICE = ('Give a local file instead (a timm-format or official clovaai .pth/.safetensors, or a '
                     "detector/segmentor checkpoint), e.g. init_cfg=dict(type='Pretrained', "
                     "checkpoint='path/to/file.pth') or --checkpoint path/to/file.pth")


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
    import timm  # our entrypoints are registered: importing any module of the package ran its __init__
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
            f'checkpoint not found: {checkpoint} (the file {checkpoint!r} does not exist; looked for '
            f'{os.path.abspath(path)}): give an '
            'existing file (timm-format or official clovaai .pth/.safetensors, or a detector/segmentor '
            "checkpoint) or a timm hub tag such as 'timm/rexnet_100.nav_in1k'")
    cached, _ = _hub_source(name, checkpoint)
    return cached or checkpoint


def _read_file(path: str, trusted: Optional[bool]) -> StateDict:
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(path)
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
    layout = 'official' if is_official_layout(sd) else 'as is'
    found = None if prefix else prefix_hint(sd, own)
    sd = to_model_layout(sd, model)
    what = f'checkpoint does not match {_name(model)}: {label}'
    missing, unexpected = check_state_dict(what, sd, own, strict=strict,
                                           hint=prefix_advice((), found, "the checkpoint's keys") if found else None)
    model.load_state_dict(sd, strict=strict)
    return LoadedWeights(label, layout, prefix, [k for k in sd if k in own], missing, unexpected)


def convert_checkpoint_file(src: str, dst: str, arch: Optional[str] = None, trusted: Optional[bool] = None,
                            verify: bool = True) -> Dict[str, object]:
    """Convert an official (or re-save a timm-format) ReXNet checkpoint file to a timm-format file.

    ``dst`` ending in ``.safetensors`` selects that format; an existing directory receives
    ``<dst>/<name of src>``. The file is written atomically (a new file gets the usual
    umask mode, a replaced one keeps its mode). Returns a summary (``dst``, ``arch``, ``layout``,
    ``tensors``, ``parameters``). Raises ``FileNotFoundError``, ``RuntimeError`` (unreadable or
    unsafe file) or :class:`CheckpointMismatchError` with what is wrong.
    """
    import timm
    sd = read_checkpoint(src, trusted=trusted)
    arch = arch or detect_arch(sd)
    known = timm.list_models('rexnet*')
    if arch not in known:
        raise CheckpointMismatchError(f'unknown arch {arch!r}; choose one of {known}')
    model = timm.create_model(arch, num_classes=num_classes_of(sd))
    out = to_timm_state_dict(sd, model)
    if verify:
        load_weights(model, out, strict=True)
    if os.path.isdir(dst):
        dst = os.path.join(dst, os.path.basename(src))
    folder = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(folder):
        raise InputNotFoundError(f'cannot write {dst}: the folder {folder} does not exist (create it first)')
    save_state_dict(out, dst)
    stats = ('running_mean', 'running_var', 'num_batches_tracked')
    return dict(dst=dst, arch=arch, layout='official' if is_official_layout(sd) else 'timm-format',
                tensors=len(out), parameters=sum(v.numel() for k, v in out.items() if not k.endswith(stats)))
