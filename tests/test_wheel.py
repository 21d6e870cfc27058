"""The wheel carries the configs (``rexnet_backbones/.mim/configs``) and a non-editable install finds them.

The full proof (a venv with the wheel, the demo's training and the console commands from outside the checkout) is
``make wheel-check`` (tools/check_wheel_install.sh); this test is its cheap part.
"""
import json
import os
import shutil
import site as site_module
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# top-level folders of a checkout that are not part of the source (``data`` only at the top: the package has its own)
BUILD_OUTPUTS = ('.git', 'build', 'dist', 'work_dirs', 'data', 'checkpoints', 'outputs', '.venv', '.pytest_cache')
ANYWHERE = shutil.ignore_patterns('*.egg-info', '__pycache__')


def _ignore(folder: str, names):
    skip = set(ANYWHERE(folder, names))
    if Path(folder) == ROOT:
        skip |= {n for n in names if n in BUILD_OUTPUTS or n.startswith('.venv')}
    return skip

PROBE = """
import json
import rexnet_backbones
from mmengine.config import Config
from rexnet_backbones import config_file, resolve_config
cfg = Config.fromfile(resolve_config('rexnet_backbones::det/retinanet_rexnet-lite-1.0x_fpn_1x_coco.py'))
import sys
modules = sorted(m.__file__ for n, m in list(sys.modules.items())
                 if n.split('.')[0] == 'rexnet_backbones' and getattr(m, '__file__', None))
print(json.dumps(dict(package=rexnet_backbones.__file__, config=config_file('det/retinanet_rexnet.py'),
                      arch=cfg.model.backbone.arch, hook=cfg.default_hooks.checkpoint.type, modules=modules)))
"""


@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the checkout (the build leaves nothing in the checkout)."""
    tmp = tmp_path_factory.mktemp('wheel')
    src = tmp / 'src'
    shutil.copytree(ROOT, src, symlinks=True, ignore=_ignore)
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
                    '-w', str(tmp / 'dist'), str(src)], check=True, timeout=300, capture_output=True)
    (found,) = (tmp / 'dist').glob('rexnet_backbones-*.whl')
    return found


def _repo_configs() -> set:
    return {p.relative_to(ROOT / 'configs').as_posix() for p in (ROOT / 'configs').rglob('*.py')}


@pytest.mark.slow
def test_wheel_contains_every_config(wheel):
    prefix = 'rexnet_backbones/.mim/configs/'
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert {n[len(prefix):] for n in names if n.startswith(prefix)} == _repo_configs()
    assert 'rexnet_backbones/config_files.py' in names


@pytest.mark.slow
def test_installed_wheel_finds_its_configs_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / 'site-packages'
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '-q', '--target', str(site), str(wheel)],
                   check=True, timeout=300, capture_output=True)
    # the installed copy, not the checkout: ``-S`` skips site-packages' .pth files, so an editable install of
    # a checkout in this environment cannot serve any module; the dependencies come from site-packages itself
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site)] + site_module.getsitepackages()))
    proc = subprocess.run([sys.executable, '-S', '-c', PROBE], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found['package'] == str(site / 'rexnet_backbones' / '__init__.py')
    assert len(found['modules']) > 5 and all(f.startswith(str(site)) for f in found['modules']), found['modules']
    assert found['config'] == str(site / 'rexnet_backbones' / '.mim' / 'configs' / 'det' / 'retinanet_rexnet.py')
    assert not os.path.islink(site / 'rexnet_backbones' / '.mim' / 'configs')  # a copy, not the checkout's link
    # _base_ references (./_base_/..., mmdet::...) resolved inside the installed copy
    assert (found['arch'], found['hook']) == ('rexnet_lite_100', 'AtomicCheckpointHook')


#: the console commands a wheel installs (setup.py entry_points)
COMMANDS = ('rexnet-train', 'rexnet-test', 'rexnet-export', 'rexnet-benchmark', 'rexnet-make-synthetic-data',
            'rexnet-convert-checkpoint', 'rexnet-demo', 'rexnet-suite', 'rexnet-rank-analysis', 'rexnet-rank-study',
            'rexnet-check-setup')


@pytest.mark.slow
def test_console_commands_run_from_the_installed_wheel(wheel, tmp_path):
    """The commands of a wheel installed outside the checkout: each answers --help, and the synthetic data that
    the errors point to, an ONNX export and a checkpoint conversion's error run from an empty folder."""
    site = tmp_path / 'site-packages'
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '-q', '--target', str(site), str(wheel)],
                   check=True, timeout=300, capture_output=True)
    assert set(COMMANDS) <= {p.name for p in (site / 'bin').iterdir()}
    work = tmp_path / 'outside'
    work.mkdir()
    # as the probe above: -S keeps an editable install of the checkout out, the wheel's copy comes first
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site)] + site_module.getsitepackages()),
               OMP_NUM_THREADS='1')

    def command(name, *args):
        return subprocess.run([sys.executable, '-S', str(site / 'bin' / name), *map(str, args)], cwd=work, env=env,
                              capture_output=True, text=True, timeout=600)

    for name in COMMANDS:
        proc = command(name, '--help')
        assert proc.returncode == 0 and f'usage: {name}' in proc.stdout, (name, proc.stderr[-2000:])
    made = command('rexnet-make-synthetic-data', '--kind', 'det', '--num-train', 2, '--num-val', 1)
    assert made.returncode == 0, made.stderr[-2000:]
    assert (work / 'data' / 'synthetic' / 'coco' / 'annotations' / 'instances_val2017.json').is_file()
    exported = command('rexnet-export', 'rexnet_100', 'rexnet_100.onnx', '--input-size', 64, 64, '--threads', 1)
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert (work / 'rexnet_100.onnx').is_file() and 'wrote rexnet_100.onnx' in exported.stdout
    missing = command('rexnet-convert-checkpoint', 'nope.pth', 'out.pth')
    assert missing.returncode == 2 and missing.stderr.startswith('error: '), missing.stderr[-2000:]
    assert 'Traceback' not in missing.stderr and 'nope.pth' in missing.stderr
