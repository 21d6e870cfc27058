"""Config checks for models with a ``type='ReXNet'`` backbone, run before anything is built.

A neck or head whose ``in_channels`` does not match the backbone otherwise fails inside the first
forward pass with a bare shape error (``weight of size [256, 512, 1, 1] ... got 61 channels``).
A two-stage detector given to ONNX export otherwise fails inside mmdet's dense head
(``TypeError: 'NoneType' object is not iterable``): :func:`check_exportable` says so up front.
"""
from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence, Union

import torch

from ..errors import InvalidInputError

__all__ = ['backbone_out_channels', 'check_in_channels', 'check_exportable', 'EXPORTABLE']


def _is_rexnet(type_: Any) -> bool:
    from .backbone import ReXNet
    if isinstance(type_, str):
        return type_.split('.')[-1] == 'ReXNet'  # 'ReXNet', 'mmdet.ReXNet', 'mmseg.ReXNet'
    return isinstance(type_, type) and issubclass(type_, ReXNet)


def backbone_out_channels(backbone_cfg: Mapping[str, Any]) -> List[int]:
    """``out_channels`` of the ReXNet that ``backbone_cfg`` describes, built on the meta device
    (no memory, no weights, no download)."""
    from .backbone import ReXNet
    kwargs = {k: v for k, v in dict(backbone_cfg).items() if k not in ('type', 'init_cfg', '_delete_')}
    with torch.device('meta'):
        return list(ReXNet(**kwargs).out_channels)


def _as_list(value: Any) -> Union[int, List[Any]]:
    return list(value) if isinstance(value, (list, tuple)) else value


def _head_problems(name: str, head: Mapping[str, Any], out_channels: List[int], described: str) -> List[str]:
    """mmseg decode/auxiliary heads fed directly by the backbone: ``in_channels`` by ``in_index``."""
    problems = []
    in_index = head.get('in_index', -1)  # mmseg's BaseDecodeHead default
    indices = list(in_index) if isinstance(in_index, (list, tuple)) else [in_index]
    if any(not -len(out_channels) <= i < len(out_channels) for i in indices):
        return [f'model.{name}.in_index={_as_list(in_index)} is out of range: the backbone ({described}) '
                f'has {len(out_channels)} outputs, backbone.out_channels = {out_channels}']
    expected: Union[int, List[int]] = [out_channels[i] for i in indices] if isinstance(in_index, (list, tuple)) \
        else out_channels[in_index]
    got = _as_list(head.get('in_channels'))
    if got is not None and got != expected:
        problems.append(f'model.{name}.in_channels is {got}, but in_index={_as_list(in_index)} selects '
                        f'{expected} from backbone.out_channels = {out_channels} ({described}): set '
                        f'model.{name}.in_channels = {expected!r} in the config')
    c1 = head.get('c1_in_channels')
    if c1 and c1 != out_channels[0]:  # DeepLabV3+: the low-level branch reads the first output
        problems.append(f'model.{name}.c1_in_channels is {c1}, but the first backbone output has '
                        f'{out_channels[0]} channels (backbone.out_channels = {out_channels}, {described}): '
                        f'set model.{name}.c1_in_channels = {out_channels[0]} in the config')
    return problems


def check_in_channels(model_cfg: Mapping[str, Any]) -> Optional[List[int]]:
    """Check that the modules fed by a ReXNet backbone expect its channels.

    ``model_cfg`` is an mmdet/mmseg model config (``cfg.model``; a whole ``Config`` with a ``model``
    key works too). With a neck (mmdet's FPN, mmseg's Semantic FPN) ``neck.in_channels`` must equal
    ``backbone.out_channels``; without one (mmseg's DeepLabV3+, LR-ASPP), each ``decode_head`` and
    ``auxiliary_head`` must expect the outputs its ``in_index`` selects (and DeepLabV3+'s
    ``c1_in_channels`` the first output).

    Returns the backbone's ``out_channels``, or None when the backbone is not a ReXNet.
    Raises ``ValueError`` naming the config value, ``backbone.out_channels`` and what to write.
    """
    if 'backbone' not in model_cfg and isinstance(model_cfg.get('model'), Mapping):
        model_cfg = model_cfg['model']
    backbone = model_cfg.get('backbone')
    if not isinstance(backbone, Mapping) or not _is_rexnet(backbone.get('type')):
        return None
    out_channels = backbone_out_channels(backbone)
    described = ', '.join(f'{k}={_as_list(backbone[k])!r}' for k in ('arch', 'widen_factor', 'out_indices')
                          if backbone.get(k) is not None)
    described = f'ReXNet({described})'
    problems: List[str] = []
    neck = model_cfg.get('neck')
    if isinstance(neck, Sequence) and not isinstance(neck, str):  # several necks: the first reads the backbone
        neck = neck[0] if neck else None
    if neck:
        got = _as_list(neck.get('in_channels'))
        if got is not None and got != out_channels:
            problems.append(f'model.neck.in_channels is {got}, but the backbone {described} gives '
                            f'backbone.out_channels = {out_channels}: write '
                            f'model = dict(neck=dict(in_channels={out_channels})) in the config')
    else:
        for name in ('decode_head', 'auxiliary_head'):
            heads = model_cfg.get(name)
            if isinstance(heads, Mapping):
                problems += _head_problems(name, heads, out_channels, described)
            elif heads:
                for i, head in enumerate(heads):
                    problems += _head_problems(f'{name}[{i}]', head, out_channels, described)
    if problems:
        raise ValueError('the config does not match its ReXNet backbone:\n  ' + '\n  '.join(problems))
    return out_channels


#: what ``tools/export.py`` and ``tools/test.py --backend onnxruntime|openvino`` support
EXPORTABLE = ('timm model names (a classifier, or the feature pyramid with --features-only), single-stage '
              'detectors (RetinaNet, SSD/SSDLite, FCOS, ...: a bbox_head, no RPN/RoI head) and mmseg '
              'EncoderDecoder segmentors')


def check_exportable(model_cfg: Mapping[str, Any], source: str = 'the config') -> None:
    """Raise ``InvalidInputError`` (a ``ValueError``) when ``model_cfg`` is a two-stage detector (an ``rpn_head`` or ``roi_head``):
    its ``mode='tensor'`` forward needs proposals that only its Python post-processing makes, so it
    cannot run as one ONNX network."""
    if 'rpn_head' not in model_cfg and 'roi_head' not in model_cfg \
            and isinstance(model_cfg.get('model'), Mapping):
        model_cfg = model_cfg['model']
    if model_cfg.get('rpn_head') is None and model_cfg.get('roi_head') is None:
        return
    raise InvalidInputError(
        f'{source}: {model_cfg.get("type", "the model")} is a two-stage detector (RPN + RoI head), which cannot '
        'be exported to ONNX nor tested with --backend onnxruntime/openvino (its RoI head needs the proposals '
        f'of Python post-processing). Supported: {EXPORTABLE}. To export its backbone alone, give the timm '
        "name of its backbone with --features-only (e.g. python tools/export.py rexnet_100 OUT.onnx --features-only)")
