"""`import rexnet_backbones` registers the models, the backbone, the hooks and the file backend; nothing more."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: what a config's ``custom_imports = ['rexnet_backbones']`` must not pull in
NOT_IMPORTED = ('rexnet_backbones.engine.runner', 'rexnet_backbones.engine.config',
                'rexnet_backbones.benchmark',
                'rexnet_backbones.demo', 'rexnet_backbones.deploy', 'rexnet_backbones.analysis',
                'mmengine.runner', 'mmdet', 'mmseg', 'onnx', 'onnxruntime', 'openvino', 'onnxscript', 'matplotlib')

PROBE = f"""
import json, sys
import rexnet_backbones
loaded = sorted(m for m in {NOT_IMPORTED!r} if m in sys.modules)
import timm
from mmengine.fileio.backends import backends
from mmengine.registry import HOOKS, MODELS
print(json.dumps(dict(
    loaded=loaded,
    timm=sorted(m for m in timm.list_models('rexnet*') if m in
                ('rexnet_090', 'rexnet_100', 'rexnet_220', 'rexnet_lite_100', 'rexnet_lite_200')),
    backbone=MODELS.get('ReXNet').__module__,
    hooks=[HOOKS.get(h).__name__ for h in ('AtomicCheckpointHook', 'CheckpointCheckHook')],
    backend=backends['atomic_local'].__name__)))
"""


def _probe() -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run([sys.executable, '-c', PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_registers_and_nothing_more():
    found = _probe()
    assert found['loaded'] == [], f'import rexnet_backbones imported {found["loaded"]}'
    assert found['timm'] == ['rexnet_090', 'rexnet_100', 'rexnet_220', 'rexnet_lite_100', 'rexnet_lite_200']
    assert found['backbone'] == 'rexnet_backbones.mm.backbone'
    assert found['hooks'] == ['AtomicCheckpointHook', 'CheckpointCheckHook']
    assert found['backend'] == 'AtomicLocalBackend'


def test_the_rest_loads_on_first_use():
    import rexnet_backbones
    from rexnet_backbones.engine import test, train  # noqa: F401  (module __getattr__)
    from rexnet_backbones.engine.runner import train as runner_train
    assert train is runner_train
    assert rexnet_backbones.deploy.__name__ == 'rexnet_backbones.deploy'
    assert 'deploy' in dir(rexnet_backbones) and 'config_file' in dir(rexnet_backbones)
    try:
        rexnet_backbones.no_such_thing
    except AttributeError as e:
        assert "has no attribute 'no_such_thing'" in str(e)
    else:
        raise AssertionError('expected AttributeError')
