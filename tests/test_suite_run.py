"""tools/suite.py run: a two-model, two-seed suite of the tiny tests/configs RetinaNet on the tiny synthetic
set (1 epoch = 4 iterations per job), run whole and as two shards, resumed after a kill, with a diverging
job, and the user errors (missing config, another suite definition in the work dir, unmatched recipes)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _helpers_tools import DET_CONFIG, TOOLS, describe, run_tool, run_tool_in_process, tool_env

pytest.importorskip('mmdet')

RESNET18 = dict(backbone=dict(_delete_=True, type='ResNet', depth=18, num_stages=4, out_indices=(0, 1, 2, 3),
                              norm_cfg=dict(type='BN', requires_grad=True), style='pytorch'),
                neck_in_channels=[64, 128, 256, 512])
COMMON = {'model.backbone.init_cfg': None, 'model.backbone.frozen_stages': -1, 'model.backbone.norm_eval': False,
          'default_hooks.logger.interval': 4}


def write_suite(path: Path, name: str = 'tiny', seeds=(0, 1), models=None, **extra) -> str:
    """A suite file over tests/configs/retinanet_tiny_synthetic.py (data from $SYNTHETIC_DATA_ROOT)."""
    models = models if models is not None else dict(
        rexnet=dict(config=DET_CONFIG, label='ReXNet tiny'), resnet18=dict(config=DET_CONFIG, **RESNET18))
    body = dict(name=name, task='det', seeds=list(seeds), models=models, common=dict(COMMON), input_size=(64, 64))
    body.update(extra)
    path.write_text(''.join(f'{k} = {v!r}\n' for k, v in body.items()))
    return str(path)


def suite_tool(args, data_root, cwd, timeout=300):
    return run_tool('suite.py', [str(a) for a in args], data_root, cwd, timeout)


def suite_in_process(args, data_root, cwd):
    """The same command line in this process (``run_tool_in_process``): for runs that stop early or find nothing to
    do; the runs that train are real subprocesses (``suite_tool``)."""
    return run_tool_in_process('suite.py', args, data_root, cwd)


def results(work_dir: Path) -> dict:
    out = {}
    for path in sorted(work_dir.glob('jobs/*/seed*/result.json')):
        result = json.loads(path.read_text())
        out[(result['model'], result['seed'])] = result
    return out


@pytest.fixture(scope='module')
def full_run(data_root, tmp_path_factory):
    """The 4 jobs in one process (then a second run that must find nothing to do)."""
    tmp = tmp_path_factory.mktemp('suite_full')
    suite = write_suite(tmp / 'tiny.py')
    first = suite_tool(['run', suite, '--work-dir', tmp / 'w', '--threads', 1], data_root, tmp)
    second = suite_in_process(['run', suite, '--work-dir', tmp / 'w', '--threads', 1], data_root, tmp)
    return tmp / 'w', first, second


@pytest.mark.slow
def test_run_writes_suite_json_and_one_result_per_job(full_run):
    work_dir, first, second = full_run
    assert first.returncode == 0, describe(first)
    suite = json.loads((work_dir / 'suite.json').read_text())
    assert suite['name'] == 'tiny' and suite['task'] == 'det' and suite['seeds'] == [0, 1]
    assert suite['primary_metric'] == 'coco/bbox_mAP' and suite['models']['resnet18']['family'] == 'ResNet'
    assert suite['models']['rexnet']['backbone_type'] == 'ReXNet'
    done = results(work_dir)
    assert sorted(done) == [('resnet18', 0), ('resnet18', 1), ('rexnet', 0), ('rexnet', 1)]
    for result in done.values():
        assert result['status'] == 'done' and result['error'] is None and result['suite_hash'] == suite['hash']
        assert 0.0 <= result['metrics']['coco/bbox_mAP'] <= 1.0
        assert result['train']['iterations'] == 4 and result['costs']['input_size'] == [64, 64]
        assert result['costs']['params'] > 0 and result['costs']['flops'] > result['costs']['params']
        assert not any(k.startswith('model.backbone') for k in result['recipe'])
        assert result['recipe']['randomness.seed'] == 0  # the config's; each job's seed is the result's seed
    # matched recipe: identical across models; different backbones: different costs
    assert done[('rexnet', 0)]['recipe'] == done[('resnet18', 0)]['recipe']
    assert done[('rexnet', 0)]['costs']['params'] != done[('resnet18', 0)]['costs']['params']
    assert 'job 4/4' in first.stdout and '4 done' in first.stdout


@pytest.mark.slow
def test_second_run_skips_finished_jobs(full_run):
    work_dir, first, second = full_run
    assert second.returncode == 0, describe(second)
    assert '0 to run' in second.stdout and 'job 1/' not in second.stdout


@pytest.mark.slow
def test_two_shards_give_the_same_results(full_run, data_root, tmp_path):
    work_dir, first, _ = full_run
    suite = write_suite(tmp_path / 'tiny.py')
    procs = [subprocess.Popen([sys.executable, os.path.join(TOOLS, 'suite.py'), 'run', suite, '--work-dir',
                               str(tmp_path / 'w'), '--jobs', f'{i}/2', '--threads', '1'], cwd=tmp_path,
                              env=tool_env(data_root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in (1, 2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all('2 jobs in this shard: 2 done' in out for out in outs)
    whole, sharded = results(work_dir), results(tmp_path / 'w')
    assert sorted(whole) == sorted(sharded)
    for key in whole:
        assert sharded[key]['metrics'] == pytest.approx(whole[key]['metrics'], abs=1e-6), key
        assert sharded[key]['suite_hash'] == whole[key]['suite_hash']


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, 'the run ended before its first checkpoint'
        assert time.monotonic() < end, f'no {path} after {timeout} s'
        time.sleep(0.05)


@pytest.mark.slow
def test_killed_job_resumes_from_its_checkpoint(data_root, tmp_path):
    from rexnet_backbones.suite import job_status, load_suite, make_jobs
    suite = write_suite(tmp_path / 'kill.py', name='kill', seeds=[3], models=dict(rexnet=dict(config=DET_CONFIG)),
                        common={**COMMON, 'train_cfg.max_epochs': 4, 'train_cfg.val_interval': 4})
    work_dir = tmp_path / 'w'
    proc = subprocess.Popen([sys.executable, os.path.join(TOOLS, 'suite.py'), 'run', suite, '--work-dir',
                             str(work_dir), '--threads', '1'], cwd=tmp_path, env=tool_env(data_root),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    train_dir = work_dir / 'jobs' / 'rexnet' / 'seed3' / 'train'
    try:
        # the end of epoch 1, as two events: its checkpoint and the hook's stats of this first session (the two
        # hooks write one after the other; killing between them would leave no stats to count this session)
        _wait_for(train_dir / 'epoch_1.pth', proc)
        _wait_for(train_dir / 'train_stats.json', proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    os.environ['SYNTHETIC_DATA_ROOT'] = data_root  # restored by conftest's _restore_environment
    [job] = make_jobs(str(work_dir), ['rexnet'], [3])
    assert job_status(job) == 'partial' and not Path(job.result_file).exists()
    assert load_suite(suite).name == 'kill'
    again = suite_tool(['run', suite, '--work-dir', work_dir, '--threads', 1], data_root, tmp_path)
    assert again.returncode == 0, describe(again)
    assert '(resuming)' in again.stdout and 'continuing from' in again.stdout + again.stderr
    [result] = results(work_dir).values()
    assert result['status'] == 'done' and result['train']['iterations'] == 16
    stats = json.loads((train_dir / 'train_stats.json').read_text())
    assert stats['sessions'] >= 2


@pytest.mark.slow
def test_diverging_job_is_marked_failed_and_the_run_goes_on(data_root, tmp_path):
    models = dict(rexnet=dict(config=DET_CONFIG),
                  diverge=dict(config=DET_CONFIG, options={'optim_wrapper.optimizer.lr': 1e12}))
    suite = write_suite(tmp_path / 'nan.py', name='nan', seeds=[0], models=models, allow_recipe_differences=True)
    proc = suite_tool(['run', suite, '--work-dir', tmp_path / 'w', '--threads', 1], data_root, tmp_path)
    assert proc.returncode == 1, describe(proc)
    done = results(tmp_path / 'w')
    assert done[('rexnet', 0)]['status'] == 'done'
    failed = done[('diverge', 0)]
    assert failed['status'] == 'failed' and failed['metrics'] == {}
    assert failed['error'].startswith('FloatingPointError: loss is ') and '\n' not in failed['error']
    assert 'failed: diverge seed 0 (FloatingPointError' in proc.stdout
    suite_json = json.loads((tmp_path / 'w' / 'suite.json').read_text())
    assert suite_json['recipe_differences'] == ['optim_wrapper.optimizer.lr']


def _one_error_line(proc) -> str:
    assert proc.returncode == 2, describe(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), describe(proc)
    return lines[0]


def test_missing_config_is_one_error_line(data_root, tmp_path):
    suite = write_suite(tmp_path / 'bad.py', models=dict(a=dict(config='det/no_such_config.py')))
    line = _one_error_line(suite_in_process(['run', suite, '--work-dir', tmp_path / 'w'], data_root, tmp_path))
    assert "model 'a'" in line and 'det/no_such_config.py' in line
    assert not (tmp_path / 'w').exists()


def test_another_suite_definition_in_the_work_dir_is_refused(data_root, tmp_path, monkeypatch):
    from rexnet_backbones.suite import load_suite
    from rexnet_backbones.suite.run import claim_work_dir
    monkeypatch.setenv('SYNTHETIC_DATA_ROOT', data_root)
    claim_work_dir(str(tmp_path / 'w'), load_suite(write_suite(tmp_path / 'a.py', seeds=[0, 1])))
    other = write_suite(tmp_path / 'b.py', seeds=[0, 1, 2])
    line = _one_error_line(suite_in_process(['run', other, '--work-dir', tmp_path / 'w'], data_root, tmp_path))
    assert 'another definition of suite' in line and 'use another --work-dir' in line
    assert not (tmp_path / 'w' / 'jobs').exists()


def test_unmatched_recipe_is_refused_unless_allowed(data_root, tmp_path):
    models = dict(a=dict(config=DET_CONFIG), b=dict(config=DET_CONFIG, options={'train_dataloader.batch_size': 4}))
    line = _one_error_line(suite_in_process(['run', write_suite(tmp_path / 'r.py', models=models), '--dry-run'],
                                            data_root, tmp_path))
    assert 'train_dataloader.batch_size' in line and 'allow_recipe_differences=True' in line
    allowed = write_suite(tmp_path / 'ok.py', models=models, allow_recipe_differences=True)
    proc = suite_in_process(['run', allowed, '--dry-run'], data_root, tmp_path)
    assert proc.returncode == 0 and 'b seed 1 [missing]' in proc.stdout, describe(proc)


@pytest.mark.slow
def test_pytorch_launcher_runs_each_job_with_torchrun(data_root, tmp_path):
    suite = write_suite(tmp_path / 'dist.py', name='dist', seeds=[0], models=dict(rexnet=dict(config=DET_CONFIG)))
    proc = suite_tool(['run', suite, '--work-dir', tmp_path / 'w', '--launcher', 'pytorch', '--gpus-per-job', 2,
                       '--threads', 1], data_root, tmp_path, timeout=600)
    assert proc.returncode == 0, describe(proc)
    [result] = results(tmp_path / 'w').values()
    assert result['status'] == 'done' and 0.0 <= result['metrics']['coco/bbox_mAP'] <= 1.0
    assert result['train']['iterations'] == 2  # 8 images / (2 ranks x batch 2)
    log = (tmp_path / 'w' / 'jobs' / 'rexnet' / 'seed0' / 'job.log').read_text()
    assert 'torch.distributed.run --nproc_per_node=2' in log and 'rank 1 of 2, backend gloo' in log


# ------------------------------------------------------------------------------------------ no training
def test_shards_are_disjoint_and_cover_every_job():
    from rexnet_backbones.suite import make_jobs, parse_shard, shard
    jobs = make_jobs('w', ['a', 'b', 'c'], [0, 1, 2])
    for count in (1, 2, 4, 9, 10):
        parts = [shard(jobs, i, count) for i in range(1, count + 1)]
        assert sorted(j.index for p in parts for j in p) == list(range(9))
    assert [(j.model, j.seed) for j in shard(jobs, 2, 2)] == [('a', 1), ('b', 0), ('b', 2), ('c', 1)]
    assert parse_shard('2/3') == (2, 3) and parse_shard(None) == (1, 1)
    for bad in ('3/2', '0/2', '1-2', 'x'):
        with pytest.raises(ValueError, match='--jobs'):
            parse_shard(bad)


def test_coco_suite_builds_flags_its_one_difference_and_shards(monkeypatch):
    from rexnet_backbones.suite import load_suite, make_jobs, shard
    from rexnet_backbones.suite.run import stage_command
    suite = load_suite('suites/coco_1x.py')
    assert suite.file == 'suites/coco_1x.py'  # as named: reports carry no path of the machine it ran on
    assert list(suite.models) == ['rexnet_100', 'rexnet_lite_100', 'regnetx_400mf', 'regnetx_800mf', 'resnet18',
                                  'mobilenetv2']
    assert {m.family for m in suite.models.values()} == {'ReXNet', 'RegNet', 'ResNet', 'MobileNetV2'}
    # RegNet's pycls weights want BGR inputs with their mean/std: the one flagged difference
    assert suite.differences and all(k.startswith('model.data_preprocessor.') for k in suite.differences)
    assert suite.recipe['optim_wrapper.optimizer.lr'] == 0.01 and suite.recipe['train_cfg.max_epochs'] == 12
    jobs = make_jobs('/shared/coco', list(suite.models), suite.seeds)
    assert len(jobs) == 18 and len(shard(jobs, 3, 3)) == 6
    env = dict(PARTITION='gpu', GPUS_PER_NODE='8', SRUN_ARGS='--qos=high')
    command = stage_command('train', 'c.py', jobs[4], 'slurm', 16, None, env)
    assert command[:3] == ['srun', '-p', 'gpu'] and '--ntasks=16' in command and '--ntasks-per-node=8' in command
    assert '--qos=high' in command and command[-4:] == ['--seed', '1', '--launcher', 'slurm']
    assert command[command.index('-m') + 1:][:4] == ['rexnet_backbones.suite.job', 'train', 'c.py', jobs[4].dir]
    with pytest.raises(RuntimeError, match='PARTITION'):
        stage_command('train', 'c.py', jobs[0], 'slurm', 8, None, {})
    torchrun = stage_command('test', 'c.py', jobs[0], 'pytorch', 8, 2, dict(PORT='29555'))
    assert torchrun[1:5] == ['-m', 'torch.distributed.run', '--nproc_per_node=8', '--master_port=29555']
    assert torchrun[-2:] == ['--threads', '2']


PRETRAIN = dict(num_train=32, num_val=16, img_size=32, epochs=1, batch_size=16)


def test_pretrained_suite_loads_its_checkpoints_through_init_cfg(data_root, tmp_path, monkeypatch):
    """Pretrain, then fine-tune: each backbone is pretrained once as a classifier and saved; the model's
    config loads it through model.backbone.init_cfg=dict(type='Pretrained', ...), as a user loads ImageNet
    weights, so the detector built and initialised from that config holds the pretrained tensors."""
    import torch
    from mmengine.registry import init_default_scope

    from rexnet_backbones.suite import load_suite
    from rexnet_backbones.suite.pretrain import ensure_pretrained
    monkeypatch.setenv('SYNTHETIC_DATA_ROOT', data_root)
    torch.set_num_threads(1)
    suite = load_suite(write_suite(tmp_path / 'pt.py', seeds=[0], pretrain=dict(PRETRAIN, dir=str(tmp_path / 'ck'))))
    for key, model in suite.models.items():
        checkpoint = str(tmp_path / 'ck' / f'{key}.pth')
        assert model.cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint=checkpoint)
    assert 'model.backbone.init_cfg' not in suite.recipe  # a backbone key: no recipe difference
    paths = ensure_pretrained(suite)
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    for key, path in paths.items():
        saved = torch.load(path, map_location='cpu')
        summary = json.loads(Path(path).with_suffix('.json').read_text())
        assert saved['meta']['model'] == key and 0 <= summary['val_error'] <= 100 and summary['recipe']['epochs'] == 1
        detector = MODELS.build(suite.models[key].cfg.model)
        before = {k: v.clone() for k, v in detector.backbone.state_dict().items()}
        detector.init_weights()
        own = detector.backbone.state_dict()
        assert set(saved['state_dict']) == set(own)
        assert all(torch.equal(own[k], v) for k, v in saved['state_dict'].items())
        assert any(not torch.equal(before[k], own[k]) for k in own if own[k].is_floating_point())
    stamp = {k: Path(p).stat().st_mtime_ns for k, p in paths.items()}
    assert ensure_pretrained(suite) == paths  # present: nothing retrained
    assert {k: Path(p).stat().st_mtime_ns for k, p in paths.items()} == stamp


def test_bad_pretrain_settings_are_one_error_line(data_root, tmp_path):
    suite = write_suite(tmp_path / 'p.py', pretrain=dict(dir=str(tmp_path / 'ck'), epoch=2))
    line = _one_error_line(suite_in_process(['run', suite, '--dry-run'], data_root, tmp_path))
    assert "pretrain has unknown keys ['epoch']" in line
    suite = write_suite(tmp_path / 'q.py', pretrain=dict(num_train=8))
    line = _one_error_line(suite_in_process(['run', suite, '--dry-run'], data_root, tmp_path))
    assert "pretrain must be a dict with at least dir=" in line


@pytest.mark.slow
def test_pretrained_suite_runs_end_to_end(data_root, tmp_path):
    suite = write_suite(tmp_path / 'pt.py', seeds=[0], pretrain=dict(PRETRAIN, dir=str(tmp_path / 'ck')))
    proc = suite_tool(['run', suite, '--work-dir', tmp_path / 'w', '--threads', 1], data_root, tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert 'pretraining rexnet' in proc.stdout and 'pretrained resnet18: validation error' in proc.stdout
    assert sorted(p.name for p in (tmp_path / 'ck').glob('*.pth')) == ['resnet18.pth', 'rexnet.pth']
    assert json.loads((tmp_path / 'w' / 'suite.json').read_text())['pretrain']['epochs'] == 1
    config = (tmp_path / 'w' / 'configs' / 'rexnet.py').read_text()
    assert "type='Pretrained'" in config and str(tmp_path / 'ck' / 'rexnet.pth') in config
    assert all(r['status'] == 'done' for r in results(tmp_path / 'w').values())
    report = suite_in_process(['report', tmp_path / 'w'], data_root, tmp_path)
    assert report.returncode == 0, describe(report)
    md = (tmp_path / 'w' / 'results.md').read_text()
    assert 'first pretrained as a classifier' in md and 'pretraining top-1 validation error: ' in md
    assert 'ReXNet tiny ' in md.split('pretraining top-1 validation error: ')[1]
