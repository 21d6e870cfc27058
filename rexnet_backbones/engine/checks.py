"""Early checks of the weights a run would load, before the Runner dumps the config and builds models.

* :func:`check_pretrained_weights` -- every ``init_cfg=dict(type='Pretrained', checkpoint=...)`` of
  the model (:func:`rexnet_backbones.weights.check_weights_readable`): a local file must exist; a timm
  hub tag must be in the Hugging Face cache, or the hub must be reachable (one quick request, instead
  of timm's minute of retries).
* :func:`check_onnx_model` -- ``tools/test.py --backend onnxruntime|openvino``: the file is an ONNX
  model written by ``tools/export.py`` for this config's model (same outputs, same channels).

Both raise :class:`~rexnet_backbones.cli.ToolError` subclasses that say what to do.
"""
from __future__ import annotations

import copy
import os.path as osp
from typing import Any, List, Optional, Tuple

from ..errors import InputNotFoundError, InvalidInputError
from ..sources import pretrained_entries

__all__ = ['check_pretrained_weights', 'hub_reachable', 'check_onnx_model']


def hub_reachable(timeout: float = 5.0) -> bool:
    """One HEAD request to the Hugging Face endpoint (honours ``HF_ENDPOINT`` and the proxy variables)."""
    import urllib.error
    import urllib.request

    from huggingface_hub import constants
    try:
        urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method='HEAD'), timeout=timeout)
    except urllib.error.HTTPError:
        return True  # it answered
    except (OSError, ValueError):
        return False
    return True


def _ways_out(key: str) -> str:
    return (f'Give a local file with --cfg-options {key}.checkpoint=path/to/weights.pth (timm-format or official '
            'clovaai file, see docs/models.md "Pretrained weights"), or train from scratch with '
            f'--cfg-options {key}=None')


def check_pretrained_weights(model_cfg: Any) -> List[str]:
    """Fail fast on a ``Pretrained`` init_cfg whose weights cannot be loaded; returns the checked keys.

    :func:`rexnet_backbones.weights.check_weights_readable` checks files and the hub cache; a hub tag
    that is not cached (and not offline) costs one quick request to the hub. URLs with a scheme
    (``torchvision://``, ``open-mmlab://``) are left to mmengine.
    """
    from ..errors import WeightsNotFoundError
    from ..weights import check_weights_readable, is_hub_tag
    checked = []
    for key, checkpoint in pretrained_entries(model_cfg):
        if '://' in checkpoint:
            continue
        hub = is_hub_tag(checkpoint)
        try:
            found = check_weights_readable(checkpoint)
        except WeightsNotFoundError as e:
            if hub and 'Hugging Face cache' in str(e):
                raise InputNotFoundError(
                    f'{key}: the timm weights {checkpoint!r} are not in the Hugging Face cache and the hub is offline '
                    f'(HF_HUB_OFFLINE=1). {_ways_out(key)}; or download them once while online.') from None
            if hub:
                raise InputNotFoundError(f'{key}: {e}. {_ways_out(key)}.') from None
            lite = ' (the lite configs read the official release file or its conversion: ' \
                f'rexnet-convert-checkpoint rexnet_lite_1.0.pth {checkpoint})' if 'rexnet_lite' in checkpoint else ''
            raise InputNotFoundError(
                f'{key}: the pretrained weights file {checkpoint} does not exist (looked for '
                f'{osp.abspath(osp.expanduser(checkpoint))}). Put it there{lite}. {_ways_out(key)}.') from e
        except ValueError as e:
            raise InvalidInputError(f'{key}: {e}') from None
        if hub and found == checkpoint and not hub_reachable():  # not cached: timm would download it
            from huggingface_hub import constants
            raise InputNotFoundError(
                f'{key}: the timm weights {checkpoint!r} are not in the Hugging Face cache and {constants.ENDPOINT} '
                f'cannot be reached (offline?). {_ways_out(key)}; or download them once while online.')
        checked.append(key)
    return checked


# ---------------------------------------------------------------------------------------------- ONNX
def _onnx_outputs(onnx_file: str) -> Tuple[Any, List[Optional[int]], Optional[Tuple[int, int]]]:
    """(output structure, channels of each output (None: dynamic), fixed (H, W) of the input or None)."""
    from ..deploy.onnx import read_structure, require
    onnx = require('onnx')
    try:
        graph = onnx.load(onnx_file, load_external_data=False).graph
        structure = read_structure(onnx_file)
    except Exception as e:  # protobuf's DecodeError, a missing metadata key, ...
        raise InvalidInputError(
            f'{onnx_file} is not an ONNX model written by tools/export.py ({type(e).__name__}: '
            f'{str(e).splitlines()[0] if str(e) else "unreadable"}). Export one with python tools/export.py '
            'CONFIG OUT.onnx --checkpoint CKPT, or test a .pth checkpoint with --backend pytorch.') from None

    def dims(value_info) -> List[Optional[int]]:
        return [d.dim_value if d.HasField('dim_value') else None for d in value_info.type.tensor_type.shape.dim]

    channels = [(dims(o)[1:2] or [None])[0] for o in graph.output]
    in_dims = dims(graph.input[0]) if len(graph.input) else []
    fixed = tuple(in_dims[2:]) if len(in_dims) == 4 and all(in_dims[2:]) else None
    return structure, channels, fixed


def check_onnx_model(cfg: Any, onnx_file: str, config: str) -> None:
    """The ONNX file exists, was exported from a model like ``cfg.model``, and that model is exportable.

    Builds ``cfg.model`` (random weights, no Pretrained init) in the config's scope and compares its
    ``mode='tensor'`` outputs (one image of the file's fixed size, else the config's test scale) with the
    file's outputs: nesting, count and channels.
    """
    import torch
    from mmengine.registry import MODELS, DefaultScope

    from ..deploy.onnx import TensorMode, flatten_outputs
    from ..sources import default_input_size
    from ..mm.checks import check_exportable
    if not osp.isfile(onnx_file):
        raise InputNotFoundError(f'ONNX model not found: {onnx_file}. Export one with python tools/export.py '
                                 f'{config} OUT.onnx --checkpoint CKPT.')
    check_exportable(cfg.model, config)
    structure, channels, fixed = _onnx_outputs(onnx_file)
    model_cfg = copy.deepcopy(cfg.model)
    if isinstance(model_cfg.get('backbone'), dict):
        model_cfg['backbone']['init_cfg'] = None
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', None)):
        model = TensorMode(MODELS.build(model_cfg)).eval()
    h, w = fixed or default_input_size(cfg)
    with torch.no_grad():
        flat, expected = flatten_outputs(model(torch.zeros(1, 3, h, w)))
    want = [int(t.shape[1]) if t.dim() > 1 else None for t in flat]
    same = expected == structure and len(want) == len(channels) and \
        all(c is None or c == x for c, x in zip(channels, want))
    if not same:
        raise InvalidInputError(
            f'{onnx_file} does not match the model of {config}: the ONNX network has {len(channels)} outputs '
            f'with channels {channels}, the config\'s model gives {len(want)} with channels {want}. It was '
            f'exported from another model; export this one: python tools/export.py {config} OUT.onnx '
            '--checkpoint CKPT.')

