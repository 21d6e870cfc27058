"""Official clovaai checkpoints -> timm format: numerics against the official code, CLI, refusals.

tools/convert_checkpoint.py runs as a real subprocess for one conversion and for the pickled-code refusal; its other
cases run the same script in the test process (``run_tool_in_process``), without paying torch's import each time."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

import rexnet_backbones  # noqa: F401
from _helpers_tools import run_tool_in_process
from rexnet_backbones.archs import REXNET_ARCHS
from rexnet_backbones.convert import detect_arch, num_classes_of, official_key_map, to_timm_state_dict
from rexnet_backbones.errors import CheckpointMismatchError
from rexnet_backbones.state_dicts import check_state_dict, common_prefix_hint

ROOT = Path(__file__).resolve().parents[1]
CASES = [('rexnetv1_1.0', 'rexnet_100'), ('rexnetv1_lite_1.0', 'rexnet_lite_100')]


def _official(reference_dir, stem):
    sd = torch.load(reference_dir / f'{stem}_official_random.pth', weights_only=True)
    io = torch.load(reference_dir / f'{stem}_io.pth', weights_only=True)
    return sd, io


def _official_like(arch: str) -> dict:
    """A random official-layout state_dict for any width (built through the inverse key map)."""
    model = timm.create_model(arch)
    mapping = official_key_map(model)
    out = {}
    for k, v in model.state_dict().items():
        if k == 'head.fc.weight':
            v = v[:, :, None, None]
        out[mapping[k]] = v
    return out


@pytest.mark.parametrize('stem,arch', CASES)
def test_converted_matches_official_logits(reference_dir, stem, arch):
    sd, io = _official(reference_dir, stem)
    assert detect_arch(sd) == arch
    model = timm.create_model(arch).eval()
    model.load_state_dict(to_timm_state_dict(sd, model), strict=True)
    with torch.no_grad():
        out = model(io['input'])
    assert (out - io['logits']).abs().max().item() <= 1e-4


@pytest.mark.parametrize('wrap', ['raw', 'state_dict', 'model', 'module'])
def test_wrapped_and_prefixed(reference_dir, wrap):
    sd, io = _official(reference_dir, 'rexnetv1_lite_1.0')
    if wrap == 'state_dict':
        sd = {'state_dict': sd, 'epoch': 3}
    elif wrap == 'model':
        sd = {'model': {f'module.{k}': v for k, v in sd.items()}}
    elif wrap == 'module':
        sd = {f'module.{k}': v for k, v in sd.items()}
    assert detect_arch(sd) == 'rexnet_lite_100'
    model = timm.create_model('rexnet_lite_100').eval()
    model.load_state_dict(to_timm_state_dict(sd, model))
    assert torch.allclose(model(io['input']), io['logits'], atol=1e-4)


@pytest.mark.parametrize('arch', ['rexnet_090', 'rexnet_130', 'rexnet_150', 'rexnet_200', 'rexnet_220', 'rexnet_300',
                                  'rexnet_lite_130', 'rexnet_lite_150', 'rexnet_lite_200'])
def test_detects_every_width(arch):
    assert detect_arch(_official_like(arch)) == arch
    # and the timm layout of the same model
    assert detect_arch(timm.create_model(arch).state_dict()) == arch


def test_cli_converts_and_loads_through_timm(reference_dir, tmp_path):
    sd, io = _official(reference_dir, 'rexnetv1_1.0')
    src = reference_dir / 'rexnetv1_1.0_official_random.pth'
    for dst, run in ((tmp_path / 'rexnet_100.pth', _convert_subprocess),
                     (tmp_path / 'rexnet_100.safetensors', _convert_cli)):
        r = run(src, dst)
        assert r.returncode == 0, r.stderr
        assert 'rexnet_100' in r.stdout and '4,796,873 parameters' in r.stdout
        model = timm.create_model('rexnet_100', pretrained=True, pretrained_cfg_overlay=dict(file=str(dst))).eval()
        with torch.no_grad():
            assert (model(io['input']) - io['logits']).abs().max() <= 1e-4


def test_official_file_through_pretrained_cfg_overlay(reference_dir):
    _, io = _official(reference_dir, 'rexnetv1_lite_1.0')
    src = reference_dir / 'rexnetv1_lite_1.0_official_random.pth'
    model = timm.create_model('rexnet_lite_100', pretrained=True, pretrained_cfg_overlay=dict(file=str(src))).eval()
    with torch.no_grad():
        assert (model(io['input']) - io['logits']).abs().max() <= 1e-4
    feats = timm.create_model('rexnet_lite_100', features_only=True, pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(src)))
    assert torch.equal(feats.stem.conv.weight, model.stem.conv.weight)
    # a different head size: the classifier is dropped by timm, the backbone still loads
    m10 = timm.create_model('rexnet_lite_100', num_classes=10, pretrained=True,
                            pretrained_cfg_overlay=dict(file=str(src)))
    assert torch.equal(m10.stem.conv.weight, model.stem.conv.weight)


def test_mismatched_arch_refused(reference_dir, tmp_path):
    src = reference_dir / 'rexnetv1_1.0_official_random.pth'
    r = _convert_cli(src, tmp_path / 'x.pth', '--arch', 'rexnet_130')
    assert r.returncode == 2
    assert 'shape mismatches' in r.stderr and 'features.0.weight' in r.stderr
    assert not (tmp_path / 'x.pth').exists()
    sd, _ = _official(reference_dir, 'rexnetv1_1.0')
    with pytest.raises(CheckpointMismatchError, match='does not match'):
        to_timm_state_dict(sd, timm.create_model('rexnet_lite_100'))


def test_missing_and_unexpected_keys_named():
    sd = _official_like('rexnet_lite_100')
    sd.pop('features.5.out.3.weight')
    sd['features.99.weight'] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError) as e:
        to_timm_state_dict(sd, timm.create_model('rexnet_lite_100'))
    msg = str(e.value)
    assert 'missing keys (1): features.5.out.3.weight' in msg
    assert 'unexpected keys (1): features.99.weight' in msg


def test_not_a_rexnet_checkpoint(tmp_path):
    resnet = timm.create_model('resnet18').state_dict()
    with pytest.raises(CheckpointMismatchError, match='not a ReXNet checkpoint'):
        detect_arch(resnet)
    with pytest.raises(CheckpointMismatchError, match='not a ReXNet checkpoint'):
        detect_arch({'epoch': 3, 'meta': {}})
    torch.save(resnet, tmp_path / 'resnet.pth')
    r = _convert_cli(tmp_path / 'resnet.pth', tmp_path / 'out.pth')
    assert r.returncode == 2 and 'not a ReXNet checkpoint' in r.stderr


def test_truncated_file_refused(reference_dir, tmp_path):
    data = (reference_dir / 'rexnetv1_lite_1.0_official_random.pth').read_bytes()
    bad = tmp_path / 'truncated.pth'
    bad.write_bytes(data[: len(data) // 2])
    r = _convert_cli(bad, tmp_path / 'o.pth')
    assert r.returncode == 2 and 'truncated.pth' in r.stderr
    assert not (tmp_path / 'o.pth').exists()
    with pytest.raises(RuntimeError, match='truncated.pth.*failed finding central directory'):  # our reader
        timm.create_model('rexnet_lite_100', pretrained=True, pretrained_cfg_overlay=dict(file=str(bad)))


def test_pickled_code_never_executed(tmp_path):
    """A file carrying a pickled callable is refused by every loader (weights_only)."""
    marker = tmp_path / 'executed'

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    sd = _official_like('rexnet_lite_100')
    sd['payload'] = Evil()
    path = tmp_path / 'evil.pth'
    torch.save(sd, path)
    r = _convert_subprocess(path, tmp_path / 'o.pth')  # a real process: if the code ran, it ran there
    assert r.returncode == 2
    with pytest.raises(RuntimeError, match='Refusing to load checkpoint .*pathlib'):  # our weights-only reader
        timm.create_model('rexnet_lite_100', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert not marker.exists()


def test_convert_does_not_import_models():
    """convert.py and archs.py sit below the models (no import cycle)."""
    import ast

    for name in ('convert.py', 'archs.py', 'hub.py'):
        tree = ast.parse((ROOT / 'rexnet_backbones' / name).read_text())
        imported = [n.module or '' for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in imported if 'models' in m.split('.')], (name, imported)
    assert len(REXNET_ARCHS) == 11


@pytest.mark.parametrize('prefix', ['backbone.', 'model.backbone.'])
def test_prefixed_checkpoint_names_the_prefix(reference_dir, prefix):
    """A detector checkpoint (backbone under ``backbone.``, plus neck/head keys) gets the prefix advice."""
    sd, _ = _official(reference_dir, 'rexnetv1_lite_1.0')
    det = {f'{prefix}{k}': v for k, v in sd.items()}
    det['neck.lateral_convs.0.conv.weight'] = torch.zeros(1)
    det['bbox_head.retina_cls.weight'] = torch.zeros(1)
    assert common_prefix_hint(det) == prefix
    with pytest.raises(CheckpointMismatchError, match=f"likely cause: the ReXNet keys start with '{prefix}'.*"
                                                      f"prefix='{prefix}'"):
        to_timm_state_dict(det, timm.create_model('rexnet_lite_100'))
    with pytest.raises(CheckpointMismatchError, match=f"prefix='{prefix}'"):
        detect_arch(det)


def test_prefix_hint_only_when_there_is_one(reference_dir):
    sd, _ = _official(reference_dir, 'rexnetv1_lite_1.0')
    assert common_prefix_hint(sd) is None  # official keys start at the root
    assert common_prefix_hint(timm.create_model('rexnet_100').state_dict()) is None
    body = {k: v for k, v in sd.items() if k.startswith('features.')}  # backbone only: still rooted
    assert common_prefix_hint(body) is None
    assert common_prefix_hint(['neck.conv.weight', 'bbox_head.fc.weight']) is None  # no ReXNet keys
    with pytest.raises(CheckpointMismatchError) as e:  # a plain shape mismatch carries no prefix advice
        check_state_dict('x', {'a.weight': torch.zeros(2)}, {'a.weight': (3,)})
    assert e.value.hint is None and 'likely cause' not in str(e.value)
    assert e.value.mismatched == [('a.weight', (2,), (3,))]


def test_check_state_dict_lists_differences():
    got = {'stem.conv.weight': torch.zeros(16, 3, 3, 3), 'extra.weight': torch.zeros(1)}
    expected = {'stem.conv.weight': (32, 3, 3, 3), 'stem.bn.weight': (32,)}
    with pytest.raises(CheckpointMismatchError, match='^my checkpoint') as e:
        check_state_dict('my checkpoint', got, expected)
    assert (e.value.missing, e.value.unexpected) == (['stem.bn.weight'], ['extra.weight'])
    assert 'stem.conv.weight: checkpoint (16, 3, 3, 3) vs model (32, 3, 3, 3)' in str(e.value)
    check_state_dict('ok', {'stem.bn.weight': torch.zeros(32)}, {'stem.bn.weight': (32,)})  # no error


def test_num_classes_of(reference_dir):
    sd, _ = _official(reference_dir, 'rexnetv1_1.0')
    assert num_classes_of(sd) == 1000
    assert num_classes_of(timm.create_model('rexnet_lite_100', num_classes=7).state_dict()) == 7
    assert num_classes_of({'features.0.weight': torch.zeros(1)}) == 1000


def _convert_subprocess(*args):
    return subprocess.run([sys.executable, str(ROOT / 'tools/convert_checkpoint.py'), *map(str, args)],
                          capture_output=True, text=True)


def _convert_cli(*args):
    """tools/convert_checkpoint.py ARGS, run in this process (cwd: the repository root, as the subprocess)."""
    return run_tool_in_process('convert_checkpoint.py', args, '', ROOT)


def test_cli_text_file_named_pth(tmp_path):
    src = tmp_path / 'rexnet_lite_1.0.pth'
    src.write_text('<html>404 Not Found</html>\n')  # e.g. a failed download saved under the file name
    r = _convert_cli(src, tmp_path / 'out.pth')
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert str(src) in r.stderr and 'not a PyTorch checkpoint' in r.stderr and 'KeyError' not in r.stderr


def test_cli_into_a_directory_and_file_modes(reference_dir, tmp_path):
    src = reference_dir / 'rexnetv1_lite_1.0_official_random.pth'
    out_dir = tmp_path / 'checkpoints'
    out_dir.mkdir()
    old_umask = os.umask(0o022)
    try:
        r = _convert_cli(src, str(out_dir) + os.sep)
        assert r.returncode == 0, r.stderr
        written = out_dir / src.name  # as cp does: the source's name inside the directory
        assert f'-> {written}' in r.stdout and written.is_file()
        assert written.stat().st_mode & 0o777 == 0o644  # the usual umask mode, not mkstemp's 0600
        written.chmod(0o640)
        r = _convert_cli(written, written)  # in place: converts the timm-format file onto itself
        assert r.returncode == 0, r.stderr
        assert written.stat().st_mode & 0o777 == 0o640  # a replaced file keeps its mode
        assert sorted(p.name for p in out_dir.iterdir()) == [src.name]  # no temporary file left
    finally:
        os.umask(old_umask)
