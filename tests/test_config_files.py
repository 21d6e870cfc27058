"""Config names: our configs by short name (``config_file``), ``mmdet::``/``mmseg::`` and local files."""
import os
import os.path as osp
from pathlib import Path

import pytest

import rexnet_backbones
from rexnet_backbones.config_files import config_file, configs_dir, is_config_spec, list_configs, resolve_config
from rexnet_backbones.errors import ConfigNotFoundError

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_config_file_is_inside_the_package():
    path = config_file('det/retinanet_rexnet.py')
    package = osp.dirname(osp.abspath(rexnet_backbones.__file__))
    assert path == osp.join(package, '.mim', 'configs', 'det', 'retinanet_rexnet.py')
    assert osp.isfile(path)
    assert rexnet_backbones.config_file is config_file


def test_installed_configs_are_the_repository_configs():
    """In a checkout ``.mim/configs`` is the repository's configs folder, every file reachable."""
    ours = sorted(osp.relpath(osp.join(d, f), osp.join(REPO, 'configs')).replace(os.sep, '/')
                  for d, _, files in os.walk(osp.join(REPO, 'configs')) for f in files if f.endswith('.py'))
    assert ours == sorted(osp.relpath(osp.join(d, f), configs_dir()).replace(os.sep, '/')
                          for d, _, files in os.walk(configs_dir(), followlinks=True) for f in files
                          if f.endswith('.py'))
    names = list_configs()
    assert 'det/retinanet_rexnet.py' in names and 'seg/fpn_rexnet-1.0x_4xb4-160k_ade20k-512x512.py' in names
    assert not any('_base_' in n for n in names)
    assert len(names) == len([n for n in ours if '_base_' not in n])


@pytest.mark.parametrize('spec', ['rexnet_backbones::det/retinanet_rexnet.py', 'det/retinanet_rexnet.py',
                                  'configs/det/retinanet_rexnet.py'])
def test_short_names_resolve_to_the_installed_file(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the checkout: no local configs/ folder
    assert resolve_config(spec) == config_file('det/retinanet_rexnet.py')
    assert is_config_spec(spec)


def test_a_local_file_wins_and_is_returned_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs('det')
    with open('det/retinanet_rexnet.py', 'w') as f:
        f.write('x = 1\n')
    assert resolve_config('det/retinanet_rexnet.py') == 'det/retinanet_rexnet.py'


def test_openmmlab_package_configs_as_mmengine_finds_them():
    import mmdet
    path = resolve_config('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py')
    assert path == osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', 'retinanet',
                            'retinanet_r50_fpn_1x_coco.py')


@pytest.mark.parametrize('spec, fragments', [
    ('det/retinanet_rexnt.py', ['config file not found: det/retinanet_rexnt.py',
                                'Did you mean det/retinanet_rexnet.py']),
    ('rexnet_backbones::det/nope.py', ['config file not found: rexnet_backbones::det/nope.py',
                                       'no det/nope.py among the configs of rexnet_backbones']),
    ('mmdet::retinanet/nope.py', ['config file not found: mmdet::retinanet/nope.py',
                                  'no retinanet/nope.py in the configs of the installed mmdet']),
    ('no_such_pkg::a.py', ["package 'no_such_pkg' is not installed"]),
])
def test_unknown_configs_say_what_was_looked_for(spec, fragments, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigNotFoundError) as e:
        resolve_config(spec)
    assert isinstance(e.value, ValueError) and isinstance(e.value, FileNotFoundError)
    for fragment in fragments:
        assert fragment in str(e.value)


def test_timm_names_are_not_config_specs():
    assert not is_config_spec('rexnet_100')
    with pytest.raises(ConfigNotFoundError, match='config file not found: rexnet_100'):
        resolve_config('rexnet_100')


def test_base_references_resolve_from_the_installed_folder():
    """``_base_`` files are relative (``./_base_/...``) or ``mmdet::``: they load from ``.mim/configs``."""
    from mmengine.config import Config
    cfg = Config.fromfile(config_file('det/retinanet_rexnet-lite-1.0x_fpn_1x_coco.py'))
    assert (cfg.model.type, cfg.model.backbone.type, cfg.model.backbone.arch) == \
        ('RetinaNet', 'ReXNet', 'rexnet_lite_100')
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'  # ./_base_/default_runtime.py
    assert cfg.param_scheduler[-1].milestones == [8, 11]  # mmdet::_base_/schedules/schedule_1x.py


def test_demo_reads_the_installed_config_and_writes_under_the_current_directory(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from rexnet_backbones import demo
    monkeypatch.chdir(tmp_path)
    cfg = demo._cfg(SimpleNamespace(work_dir=demo.DEFAULT_WORK_DIR))
    assert cfg.filename == config_file('det/retinanet_rexnet_synthetic.py')
    assert (demo.DEFAULT_DATA_ROOT, demo.DEFAULT_WORK_DIR) == ('data/synthetic', osp.join('work_dirs', 'demo'))
    assert cfg.work_dir == osp.join('work_dirs', 'demo')


def test_library_code_builds_no_path_from_the_repository_root():
    """No module locates files through ``__file__`` except config_files (the package's own data)."""
    package = Path(rexnet_backbones.__file__).parent
    offenders = [str(p.relative_to(package)) for p in package.rglob('*.py')
                 if '.mim' not in p.parts and p.name != 'config_files.py'
                 and ('__file__' in p.read_text() or 'parents[' in p.read_text())]
    assert offenders == []
