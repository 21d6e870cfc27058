"""A Hugging Face hub cache on disk, laid out as ``huggingface_hub`` lays it out, for offline tests.

    <root>/models--timm--rexnet_100.nav_in1k/
        blobs/<sha256 of the file>
        refs/main                                   (the commit hash)
        snapshots/<commit>/model.safetensors       -> ../../blobs/<sha256>  (symlink)

Point ``HF_HUB_CACHE`` at ``root`` (before ``huggingface_hub`` is imported: it reads the variable once)
and set ``HF_HUB_OFFLINE=1``.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Dict, Optional

import torch

COMMIT = '0123456789abcdef0123456789abcdef01234567'  # any 40-hex commit hash


def make_hub_cache(root: os.PathLike, sd: Dict[str, torch.Tensor], repo_id: str = 'timm/rexnet_100.nav_in1k',
                   filename: str = 'model.safetensors', config: Optional[str] = None) -> Path:
    """Put ``sd`` in a hub cache at ``root`` as ``repo_id``'s ``filename`` on its ``main`` branch.

    ``filename`` ending in ``.safetensors`` is written with safetensors, anything else with ``torch.save``.
    ``config`` (a JSON string) is added as ``config.json`` when given. Returns the snapshot file path.
    """
    from safetensors.torch import save_file

    repo = Path(root) / ('models--' + repo_id.replace('/', '--'))
    (repo / 'blobs').mkdir(parents=True, exist_ok=True)
    (repo / 'refs').mkdir(exist_ok=True)
    snapshot = repo / 'snapshots' / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / 'refs' / 'main').write_text(COMMIT)

    files = {}
    tmp = repo / 'blobs' / 'incoming'
    if filename.endswith('.safetensors'):
        save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp))
    else:
        torch.save(sd, tmp)
    files[filename] = tmp.read_bytes()
    tmp.unlink()
    if config is not None:
        files['config.json'] = config.encode()
    for name, data in files.items():
        blob = repo / 'blobs' / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot / filename
