"""Hugging Face hub weights without the network: find them in the local cache, or fail at once offline.

timm fetches hub weights with ``huggingface_hub.hf_hub_download``. That reads ``HF_HUB_OFFLINE`` once, when
``huggingface_hub`` is imported; set later (or not set on a machine without internet), every missing file
costs about 25 s of HTTP retries (1+2+4+8+8 s), once for ``model.safetensors`` and once for
``pytorch_model.bin``. ``resolve_hub_weights`` asks the cache only, so a loader can pass timm the cached
file, or tell the user what to do without waiting.
"""
from __future__ import annotations

import os
from typing import List, Optional

__all__ = ['hub_offline', 'resolve_hub_weights', 'hub_id_of']

_TRUE = {'1', 'ON', 'YES', 'TRUE'}


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set now or was set when
    ``huggingface_hub`` was imported."""
    if any((os.environ.get(k) or '').upper() in _TRUE for k in ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE')):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        return False
    return bool(constants.HF_HUB_OFFLINE)


def hub_id_of(name: str) -> str:
    """Hub repo id (with ``@revision`` if any) of a hub id or of a timm model name with tag.

    ``'timm/rexnet_100.nav_in1k'`` and ``'hf-hub:timm/rexnet_100.nav_in1k'`` are hub ids already;
    ``'rexnet_100.nav_in1k'`` or ``'rexnet_100'`` (its default tag) are looked up in timm's pretrained cfgs.
    Raises ``ValueError`` for a timm name whose cfg has no hub id.
    """
    name = name.split(':', 1)[1] if name.startswith(('hf-hub:', 'hf_hub:', 'timm:')) else name
    if '/' in name:
        return name
    import timm
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        raise ValueError(f'{name!r} has no Hugging Face hub weights in timm; give a local file instead '
                         '(timm-format or official clovaai .pth/.safetensors)')
    return cfg.hf_hub_id


def _candidate_files(filename: Optional[str]) -> List[str]:
    """The files timm's ``load_state_dict_from_hf`` tries, in its order (safetensors first)."""
    filename = filename or 'pytorch_model.bin'
    if filename.endswith('.safetensors'):
        return [filename]
    if filename == 'pytorch_model.bin':
        safe = 'model.safetensors'
    elif filename == 'open_clip_pytorch_model.bin':
        safe = 'open_clip_model.safetensors'
    elif filename.endswith('.bin'):
        safe = filename[:-len('.bin')] + '.safetensors'
    else:
        return [filename]
    return [safe, filename]


def resolve_hub_weights(hf_hub_id: str, filename: Optional[str] = None,
                        cache_dir: Optional[str] = None) -> Optional[str]:
    """Local path of the cached weights of ``hf_hub_id``, without any network access.

    Args:
        hf_hub_id: ``'timm/rexnet_100.nav_in1k'`` (``@revision`` and an ``hf-hub:`` prefix are accepted)
            or a timm model name with tag such as ``'rexnet_100.nav_in1k'``.
        filename: the pretrained cfg's ``hf_hub_filename``; default: timm's ``model.safetensors``, then
            ``pytorch_model.bin``.
        cache_dir: hub cache folder; default: huggingface_hub's (``HF_HUB_CACHE``/``HF_HOME``).

    Returns the cached file, or None when it is not cached and the hub is online (timm may download it).
    Raises ``FileNotFoundError`` at once, with what to do instead, when it is not cached and the hub
    is offline (``HF_HUB_OFFLINE=1``).
    """
    repo_rev = hub_id_of(hf_hub_id)
    repo_id, _, revision = repo_rev.partition('@')
    try:
        from huggingface_hub import constants, try_to_load_from_cache
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        return None
    names = _candidate_files(filename)
    for name in names:
        path = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir, revision=revision or None)
        if isinstance(path, str) and os.path.isfile(path):
            return path
    if not hub_offline():
        return None
    cache = cache_dir or constants.HF_HUB_CACHE
    raise FileNotFoundError(
        f'{repo_rev}: the hub is offline (HF_HUB_OFFLINE=1) and {" / ".join(names)} is not in the Hugging Face '
        f'cache {cache}. Give a local file instead: timm.create_model(NAME, pretrained=True, '
        "pretrained_cfg_overlay=dict(file='path/to/weights.safetensors')), or for the mm backbone "
        "init_cfg=dict(type='Pretrained', checkpoint='path/to/weights.pth'). timm-format and official "
        'clovaai files both work (official ones can be converted once with rexnet-convert-checkpoint '
        'SRC DST). Or download it once while online (HF_HUB_OFFLINE unset).')
