"""Pretrained weights through the Hugging Face hub path, offline, from a cache laid out as huggingface_hub does."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

import rexnet_backbones  # noqa: F401
from rexnet_backbones.convert import to_timm_state_dict
from rexnet_backbones.hub import hub_id_of, resolve_hub_weights

from _hub_cache import make_hub_cache

ROOT = Path(__file__).resolve().parents[1]

# loads through timm and compares every tensor with the cached file; prints the resolved path
_CHECK = '''
import sys, time, os
import timm, torch
from safetensors.torch import load_file
import rexnet_backbones
from rexnet_backbones.hub import resolve_hub_weights
name, hub_id, cached = sys.argv[1], sys.argv[2], sys.argv[3]
kwargs = {} if hub_id == '-' else dict(pretrained_cfg_overlay=dict(hf_hub_id=hub_id))
if os.environ.get('LATE_OFFLINE'):  # set after huggingface_hub was imported (it reads the variable once)
    from huggingface_hub import constants
    os.environ['HF_HUB_OFFLINE'] = '1'
    assert not constants.HF_HUB_OFFLINE  # so hf_hub_download alone would retry the network
t = time.time()
model = timm.create_model(name, pretrained=True, **kwargs)
elapsed = time.time() - t
expected = load_file(cached)
got = model.state_dict()
assert set(got) == set(expected), sorted(set(got) ^ set(expected))[:5]
bad = [k for k in got if not torch.equal(got[k], expected[k])]
assert not bad, bad[:5]
print('OK', len(got), resolve_hub_weights(hub_id if hub_id != '-' else name), f'{elapsed:.1f}s')
'''


def _env(cache: Path, offline: bool = True) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(('HF_', 'HUGGINGFACE_'))}
    env.update(HF_HOME=str(cache.parent / 'hf_home'), HF_HUB_CACHE=str(cache), OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get('PYTHONPATH', '')]))
    if offline:
        env['HF_HUB_OFFLINE'] = '1'
    return env


def _converted(reference_dir: Path, stem: str, arch: str) -> dict:
    sd = torch.load(reference_dir / f'{stem}_official_random.pth', weights_only=True)
    return to_timm_state_dict(sd, timm.create_model(arch))


def test_timm_loads_cached_hub_weights_offline(reference_dir, tmp_path):
    """timm.create_model('rexnet_100', pretrained=True) reads exactly the tensors of the cached nav_in1k file."""
    cache = tmp_path / 'hub'
    cached = make_hub_cache(cache, _converted(reference_dir, 'rexnetv1_1.0', 'rexnet_100'))
    assert cached.is_symlink() and (cache / 'models--timm--rexnet_100.nav_in1k' / 'refs' / 'main').is_file()
    r = subprocess.run([sys.executable, '-c', _CHECK, 'rexnet_100', '-', str(cached)],
                       env=_env(cache), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout.split()
    assert out[:2] == ['OK', str(len(load_file(cached)))]
    assert Path(out[2]) == cached  # resolve_hub_weights finds the same snapshot file


def test_our_entrypoint_uses_cached_hub_file_when_offline_is_set_late(reference_dir, tmp_path):
    """HF_HUB_OFFLINE set after huggingface_hub's import: ours loads the cached file without hub retries."""
    cache = tmp_path / 'hub'
    hub_id = 'timm/rexnet_lite_100.test_in1k'
    cached = make_hub_cache(cache, _converted(reference_dir, 'rexnetv1_lite_1.0', 'rexnet_lite_100'), repo_id=hub_id)
    env = _env(cache, offline=False)
    env['LATE_OFFLINE'] = '1'
    r = subprocess.run([sys.executable, '-c', _CHECK, 'rexnet_lite_100', hub_id, str(cached)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split()[0] == 'OK' and Path(r.stdout.split()[2]) == cached
    assert float(r.stdout.split()[3].rstrip('s')) < 20  # hub retries alone take ~47 s
    assert 'Retrying' not in r.stderr


def test_uncached_tag_fails_fast_offline(tmp_path, monkeypatch):
    """Offline set late (huggingface_hub already imported): no ~47 s of retries, the local-file advice at once."""
    import huggingface_hub  # noqa: F401  (imported before the variable is set)
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    t = time.time()
    with pytest.raises(FileNotFoundError, match=r'HF_HUB_OFFLINE=1.*not in the Hugging Face cache') as e:
        resolve_hub_weights('timm/rexnet_150.nav_in1k', cache_dir=str(tmp_path))
    assert "pretrained_cfg_overlay=dict(file='path/to/weights.safetensors')" in str(e.value)
    assert "init_cfg=dict(type='Pretrained', checkpoint='path/to/weights.pth')" in str(e.value)
    assert 'timm/rexnet_150.nav_in1k' in str(e.value) and str(tmp_path) in str(e.value)
    # and through our entrypoints (their pretrained cfg names a hub id that is not cached)
    with pytest.raises(FileNotFoundError, match='timm/rexnet_lite_100.nowhere: the hub is offline'):
        timm.create_model('rexnet_lite_100', pretrained=True,
                          pretrained_cfg_overlay=dict(hf_hub_id='timm/rexnet_lite_100.nowhere'))
    assert time.time() - t < 5


def test_resolve_online_not_cached_leaves_it_to_timm(tmp_path, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    monkeypatch.delenv('TRANSFORMERS_OFFLINE', raising=False)
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', False)
    assert resolve_hub_weights('timm/rexnet_100.nav_in1k', cache_dir=str(tmp_path)) is None
    # cached: found without the network, online too; a .bin is found when there is no .safetensors
    path = make_hub_cache(tmp_path, {'w': torch.zeros(2)}, filename='pytorch_model.bin')
    assert resolve_hub_weights('hf-hub:timm/rexnet_100.nav_in1k', cache_dir=str(tmp_path)) == str(path)
    assert resolve_hub_weights('timm/rexnet_100.nav_in1k@main', cache_dir=str(tmp_path)) == str(path)


def test_hub_id_of():
    assert hub_id_of('rexnet_100') == 'timm/rexnet_100.nav_in1k'
    assert hub_id_of('rexnet_150.nav_in1k') == 'timm/rexnet_150.nav_in1k'
    assert hub_id_of('hf-hub:timm/rexnet_100.nav_in1k') == 'timm/rexnet_100.nav_in1k'
    with pytest.raises(ValueError, match="'rexnet_lite_100' has no Hugging Face hub weights"):
        hub_id_of('rexnet_lite_100')


_MM_CHECK = '''
import sys
import torch
from safetensors.torch import load_file
import rexnet_backbones
from rexnet_backbones.mm import ReXNet
cached = load_file(sys.argv[1])
for init_cfg in (dict(type='Pretrained', checkpoint='timm/rexnet_100.nav_in1k'),
                 [dict(type='Pretrained', checkpoint='timm/rexnet_100.nav_in1k')]):
    backbone = ReXNet(arch='rexnet_100', out_indices=(1, 2, 3, 4), init_cfg=init_cfg)
    backbone.init_weights()
    got = backbone.state_dict()
    assert got and all(torch.equal(v, cached[k]) for k, v in got.items()), 'tensors differ'
print('OK', len(got))
'''


def test_mm_backbone_init_cfg_loads_cached_hub_weights_offline(reference_dir, tmp_path):
    """init_cfg=dict(type='Pretrained', checkpoint='timm/rexnet_100.nav_in1k') reads exactly the cached tensors."""
    pytest.importorskip('mmengine')
    cache = tmp_path / 'hub'
    cached = make_hub_cache(cache, _converted(reference_dir, 'rexnetv1_1.0', 'rexnet_100'))
    r = subprocess.run([sys.executable, '-c', _MM_CHECK, str(cached)], env=_env(cache), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    n = int(r.stdout.split()[-1])
    # every tensor of the backbone (stem and blocks to stride 32; the unused head conv is pruned)
    assert n == 405 and n == len([k for k in load_file(cached) if k.startswith(('stem.', 'features.'))]) - 6
