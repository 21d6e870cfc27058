"""timm's own model tests (``tests/test_models.py`` of the installed timm version's sdist) on our models.

The sdist is fetched with pip once and its tests are kept under ``~/.cache/rexnet-backbones/``; the test
is skipped only when the package index can not be reached. ``-p rexnet_backbones`` registers our models
in the pytest process that runs timm's tests, before they are collected (timm parametrizes over
``list_models()`` at import time).

Every model we register gets timm's cheap per-model checks (forward, default cfgs, ``features_only``); the
expensive ones (backward, TorchScript, FX tracing and their combinations: the same code at every width) run on one
model per family, the smallest (``FAMILIES``). ``test_our_models_are_all_checked`` keeps that list complete.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import pytest
import timm

import rexnet_backbones  # noqa: F401  (registers our models in this process too)

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'rexnet-backbones'
#: our timm modules (``rexnet_backbones/models/<module>.py``) and their models; the first of each: all of timm's tests
FAMILIES = {
    'rexnet_lite': ['rexnet_lite_100', 'rexnet_lite_130', 'rexnet_lite_150', 'rexnet_lite_200'],
    'rexnet_v1': ['rexnet_090', 'rexnet_220'],
}
MODELS = [m for models in FAMILIES.values() for m in models]
REPRESENTATIVES = [models[0] for models in FAMILIES.values()]
# timm's per-model tests that select our models (the others are parametrized over named timm models,
# or over timm modules such as 'rexnet' that our entrypoints are not registered in)
CHEAP_TESTS = {'test_model_forward', 'test_model_default_cfgs', 'test_model_forward_features'}
TIMM_TESTS = CHEAP_TESTS | {
    'test_model_backward', 'test_model_forward_torchscript', 'test_model_forward_fx', 'test_model_backward_fx',
    'test_model_forward_fx_torchscript',
}
_UNREACHABLE = ('NewConnectionError', 'NameResolutionError', 'Failed to establish a new connection',
                'Name or service not known', 'Temporary failure in name resolution', 'Network is unreachable', 'ConnectTimeoutError',
                'ProxyError', 'Connection refused', 'Read timed out', 'No route to host')


def _timm_tests() -> Path:
    """Folder holding ``tests/`` and ``pyproject.toml`` of the installed timm's sdist (downloaded once)."""
    version = timm.__version__
    dest = CACHE / f'timm-{version}-tests'
    if (dest / 'tests' / 'test_models.py').is_file():
        return dest
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--no-binary', ':all:', '--retries', '1',
               '--timeout', '20', '--disable-pip-version-check', f'timm=={version}', '-d', tmp]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            out = r.stdout + r.stderr
            if any(marker in out for marker in _UNREACHABLE):
                pytest.skip(f'the package index is unreachable, cannot fetch the timm {version} sdist:\n{out[-1500:]}')
            pytest.fail(f'pip could not download the timm {version} sdist:\n{out[-3000:]}')
        archive, = Path(tmp).glob('timm-*.tar.gz')
        top = f'timm-{version}/'
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers()
                       if m.name.startswith(top + 'tests/') or m.name == top + 'pyproject.toml']
            kwargs = {'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}
            tar.extractall(tmp, members=members, **kwargs)
        # only tests/ and pyproject.toml: timm's sources stay out, the installed timm is the one tested
        try:
            os.rename(Path(tmp) / top.rstrip('/'), dest)
        except OSError:  # a concurrent run got there first
            if not (dest / 'tests' / 'test_models.py').is_file():
                raise
    return dest


@pytest.mark.slow
def test_timm_own_model_tests_pass(tmp_path):
    src = _timm_tests()
    assert not (src / 'timm').exists()
    env = {k: v for k, v in os.environ.items()
           # GITHUB_ACTIONS drops timm's fx + TorchScript test; TORCH_* pick other devices/backends
           if k not in ('GITHUB_ACTIONS', 'TORCH_DEVICE', 'TORCH_BACKEND', 'TIMEOUT', 'PYTEST_ADDOPTS')}
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(ROOT), env.get('PYTHONPATH')) if p)
    env['HF_HUB_OFFLINE'] = '1'
    report = tmp_path / 'junit.xml'
    cmd = [sys.executable, '-m', 'pytest', str(src / 'tests' / 'test_models.py'),
           '-c', str(src / 'pyproject.toml'), '--rootdir', str(src), '-o', 'addopts=',
           '-p', 'rexnet_backbones', '-p', 'no:cacheprovider', '-W', 'ignore::pytest.PytestUnknownMarkWarning',
           '-k', _selection(), '-q', '--junitxml', str(report)]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    tail = (r.stdout + r.stderr)[-6000:]
    assert report.is_file(), tail
    ran = defaultdict(set)
    not_passed = []
    for case in ET.parse(report).getroot().iter('testcase'):
        name = case.get('name')
        func, _, params = name.partition('[')
        model = next((m for m in MODELS if m in params), None)
        ran[model].add(func)
        if any(child.tag in ('failure', 'error', 'skipped') for child in case):
            not_passed.append(name)
    assert r.returncode == 0 and not not_passed, f'{not_passed}\n{tail}'
    assert set(ran) == set(MODELS), tail
    for model in MODELS:
        expected = TIMM_TESTS if model in REPRESENTATIVES else CHEAP_TESTS
        assert ran[model] == expected, (model, sorted(ran[model] ^ expected))


def _selection() -> str:
    """pytest ``-k``: every test of the representatives, the cheap ones (no backward, fx or TorchScript) of the rest."""
    others = [m for m in MODELS if m not in REPRESENTATIVES]
    return (f"{' or '.join(REPRESENTATIVES)} or (({' or '.join(others)}) "
            'and not backward and not fx and not torchscript)')


def test_our_models_are_all_checked():
    """FAMILIES is what importing rexnet_backbones registers in timm, module by module."""
    ours = [m for m in timm.list_models() if timm.models.model_entrypoint(m).__module__.startswith('rexnet_backbones.')]
    assert sorted(ours) == sorted(MODELS)
    for module, models in FAMILIES.items():
        assert timm.list_models(module=module) == models, module


# timm runs these over its own modules (FEAT_INTER_FILTERS, named models); ours are not in those lists,
# so they are called directly, with the arguments timm gives its ReXNet
FAMILY_TESTS = [
    ('test_model_forward_intermediates', (1,)),
    ('test_model_forward_intermediates_features', (1,)),
    ('test_prune_intermediate_layers_contract', ()),
    ('test_prune_intermediate_layers_last_feature', (True,)),
    ('test_prune_intermediate_layers_params_used', ()),
    ('test_feature_getter_stage_ends_torchscript', ()),
    ('test_head_hidden_size', ({},)),
]


@pytest.fixture(scope='module')
def timm_test_models():
    """timm's tests/test_models.py as a module, loaded once (its import lists and parametrizes every timm model)."""
    import importlib.util
    import warnings

    path = _timm_tests() / 'tests' / 'test_models.py'
    spec = importlib.util.spec_from_file_location('timm_own_test_models', path)
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize('model_name', REPRESENTATIVES)  # the same code at every width: one model per family
def test_timm_family_tests_on_our_models(model_name, timm_test_models):
    import warnings

    module = timm_test_models
    for name, args in FAMILY_TESTS:
        test = getattr(module, name)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FutureWarning)  # torch.jit.script is deprecated
            test(model_name, *args)
