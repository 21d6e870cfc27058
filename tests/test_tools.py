"""tools/train.py, tools/test.py, tools/dist_*.sh and the dataset check, on tiny synthetic data.

The end-to-end tests run the tools as subprocesses (as a user would) on the configs in
tests/configs (a 1/4-width ResNet-18 RetinaNet and Semantic-FPN at 128x128 on 8 train / 4 val
synthetic images) and are marked slow; the in-process tests of the argument handling and of the
dataset check are quick.
"""
import os.path as osp
import pickle
import shutil
import sys

import pytest

from _helpers_tools import (
    DET_CONFIG, DET_DIST_CONFIG, NUM_VAL, REPO_ROOT, SEG_CONFIG, TOOLS, describe, free_port,
    logged_metric, run, run_tool, run_tool_in_process)

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')
torch = pytest.importorskip('torch')


@pytest.fixture(scope='module')
def det_run(data_root, tmp_path_factory):
    """tools/train.py on the tiny RetinaNet config: one epoch of 4 iterations, then validation."""
    work_dir = tmp_path_factory.mktemp('det_train')
    proc = run_tool('train.py', [DET_CONFIG, '--work-dir', work_dir], data_root, cwd=work_dir)
    return work_dir, proc


@pytest.fixture(scope='module')
def seg_run(data_root, tmp_path_factory):
    """tools/train.py on the tiny Semantic-FPN config: 2 iterations, then validation."""
    work_dir = tmp_path_factory.mktemp('seg_train')
    proc = run_tool('train.py', [SEG_CONFIG, '--work-dir', work_dir], data_root, cwd=work_dir)
    return work_dir, proc


def _torch_load(path):
    return torch.load(path, map_location='cpu', weights_only=False)  # files written by this test


# ------------------------------------------------------------------------------------------
# end-to-end: mmdet
# ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_train_det_writes_checkpoint_and_validates(det_run):
    work_dir, proc = det_run
    assert proc.returncode == 0, describe(proc)
    ckpt = work_dir / 'epoch_1.pth'
    assert ckpt.is_file()
    assert (work_dir / 'last_checkpoint').read_text().strip() == str(ckpt)
    state = _torch_load(ckpt)
    assert state['meta']['epoch'] == 1 and state['meta']['iter'] == 4
    assert any(k.startswith('backbone.') for k in state['state_dict'])
    assert any(k.startswith('bbox_head.') for k in state['state_dict'])
    log = proc.stdout + proc.stderr
    assert 'Epoch(train) [1][4/4]' in log
    assert 0.0 <= logged_metric(log, 'coco/bbox_mAP') <= 1.0


@pytest.mark.slow
def test_test_det_metrics_out_pkl_and_show_dir(det_run, data_root, tmp_path):
    work_dir, train = det_run
    assert train.returncode == 0, describe(train)
    out = tmp_path / 'preds.pkl'
    proc = run_tool('test.py', [DET_CONFIG, work_dir / 'epoch_1.pth', '--work-dir', tmp_path,
                                '--out', out, '--show-dir', 'painted'], data_root, cwd=tmp_path)
    assert proc.returncode == 0, describe(proc)
    log = proc.stdout + proc.stderr
    # same weights and data as the validation at the end of training -> the same mAP
    val_map = logged_metric(train.stdout + train.stderr, 'coco/bbox_mAP')
    assert logged_metric(log, 'coco/bbox_mAP') == pytest.approx(val_map, abs=1e-4)
    assert 'Load checkpoint from' in log
    # --out: one DumpDetResults entry per test image, with predictions and without GT
    with open(out, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == NUM_VAL
    assert sorted(r['img_id'] for r in results) == list(range(1, NUM_VAL + 1))
    for r in results:
        pred = r['pred_instances']
        assert pred['bboxes'].shape[-1] == 4 and len(pred['scores']) == len(pred['labels']) > 0
        assert 'gt_instances' not in r
    # --show-dir: painted images under <work_dir>/<timestamp>/painted
    painted = sorted(p for p in tmp_path.glob('*/painted/*.jpg'))
    assert len(painted) == NUM_VAL
    from PIL import Image
    with Image.open(painted[0]) as im:
        assert im.size == (256, 128)  # ground truth | prediction, side by side
    # metrics json of the run
    metrics = list(tmp_path.glob('2*/2*.json'))
    assert metrics and 'coco/bbox_mAP' in metrics[0].read_text()


@pytest.mark.slow
def test_train_det_resume_latest(det_run, data_root, tmp_path):
    work_dir, train = det_run
    assert train.returncode == 0, describe(train)
    shutil.copy(work_dir / 'epoch_1.pth', tmp_path / 'epoch_1.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_1.pth'))
    proc = run_tool('train.py', [DET_CONFIG, '--work-dir', tmp_path, '--resume', '--cfg-options',
                                 'train_cfg.max_epochs=2', 'train_cfg.val_interval=5'],
                    data_root, cwd=tmp_path)
    assert proc.returncode == 0, describe(proc)
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 1, iter: 4' in log
    assert 'Epoch(train) [1]' not in log and 'Epoch(train) [2][4/4]' in log
    state = _torch_load(tmp_path / 'epoch_2.pth')
    assert state['meta']['epoch'] == 2 and state['meta']['iter'] == 8


@pytest.mark.slow
def test_missing_dataset_gives_clear_error(tmp_path):
    missing = tmp_path / 'nowhere'
    proc = run_tool_in_process('train.py', [DET_CONFIG, '--work-dir', tmp_path / 'wd'], str(missing), tmp_path)
    assert proc.returncode != 0
    assert 'Traceback' not in proc.stderr, describe(proc)
    err = proc.stderr
    assert 'Dataset not found' in err
    assert str(missing / 'coco' / 'annotations' / 'instances_train2017.json') in err
    assert 'data/coco' in err  # the standard layout
    assert 'make_synthetic_data' in err
    assert '--cfg-options train_dataloader.dataset.data_root=' in err
    assert 'SYNTHETIC_DATA_ROOT' in err
    assert not (tmp_path / 'wd').exists()  # stopped before the Runner was built


# ------------------------------------------------------------------------------------------
# end-to-end: distributed (2 CPU processes, gloo)
# ------------------------------------------------------------------------------------------
_BN_STATS = ('running_mean', 'running_var', 'num_batches_tracked')


@pytest.mark.slow
def test_dist_train_two_ranks_end_identical_then_dist_test(data_root, tmp_path):
    work_dir = tmp_path / 'dist'
    proc = run(['bash', osp.join(TOOLS, 'dist_train.sh'), DET_DIST_CONFIG, 2, '--work-dir',
                work_dir], data_root, cwd=tmp_path, timeout=400, PYTHON=sys.executable,
               PORT=free_port())
    assert proc.returncode == 0, describe(proc)
    log = proc.stdout + proc.stderr
    if not torch.cuda.is_available():
        assert "-> 'gloo'" in log and 'rank 1 of 2, backend gloo' in log
    ranks = [_torch_load(work_dir / f'rank{r}_state.pth') for r in (0, 1)]
    assert [s['rank'] for s in ranks] == [0, 1]
    assert all(s['world_size'] == 2 for s in ranks)
    assert all(s['wrapper'] == 'MMDistributedDataParallel' for s in ranks)
    assert ranks[0]['iter'] == 2  # 8 images / (2 ranks x batch 2)
    first, second = ranks[0]['state_dict'], ranks[1]['state_dict']
    assert first.keys() == second.keys()
    # training changed the weights ...
    init = ranks[0]['initial_state_dict']
    assert any(not torch.equal(init[k], first[k]) for k in first if k not in ranks[0]['buffers'])
    # ... identically on both ranks (parameters are all-reduced; BN running statistics are not
    # synchronised by mmengine's DDP wrapper, broadcast_buffers=False, so they are skipped)
    differing = [k for k in first if not k.endswith(_BN_STATS) and
                 not torch.equal(first[k], second[k])]
    assert differing == []
    # rank 0's checkpoint holds the same weights
    ckpt = _torch_load(work_dir / 'epoch_1.pth')['state_dict']
    assert all(torch.equal(ckpt[k], first[k]) for k in ckpt)

    # dist_test.sh on the same checkpoint with 2 processes
    test_dir = tmp_path / 'dist_test'
    proc = run(['bash', osp.join(TOOLS, 'dist_test.sh'), DET_CONFIG, work_dir / 'epoch_1.pth', 2,
                '--work-dir', test_dir], data_root, cwd=tmp_path, timeout=400,
               PYTHON=sys.executable, PORT=free_port())
    assert proc.returncode == 0, describe(proc)
    test_log = proc.stdout + proc.stderr
    assert logged_metric(test_log, 'coco/bbox_mAP') == pytest.approx(
        logged_metric(log, 'coco/bbox_mAP'), abs=1e-4)


def test_dist_scripts_print_usage_without_arguments():
    for script, n in (('dist_train.sh', 1), ('dist_test.sh', 2)):
        proc = run(['bash', osp.join(TOOLS, script), *['x'] * n], '', cwd=TOOLS, timeout=30)
        assert proc.returncode == 2 and 'usage:' in proc.stderr


# ------------------------------------------------------------------------------------------
# end-to-end: mmseg
# ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_train_seg_two_iterations(seg_run):
    work_dir, proc = seg_run
    assert proc.returncode == 0, describe(proc)
    log = proc.stdout + proc.stderr
    assert 'Iter(train) [2/2]' in log
    assert 0.0 <= logged_metric(log, 'mIoU') <= 100.0
    state = _torch_load(work_dir / 'iter_2.pth')
    assert state['meta']['iter'] == 2
    assert any(k.startswith('decode_head.') for k in state['state_dict'])


@pytest.mark.slow
def test_test_seg_out_pkl_and_show_dir(seg_run, data_root, tmp_path):
    work_dir, train = seg_run
    assert train.returncode == 0, describe(train)
    out, show = tmp_path / 'preds.pkl', tmp_path / 'show'
    proc = run_tool('test.py', [SEG_CONFIG, work_dir / 'iter_2.pth', '--work-dir', tmp_path,
                                '--out', out, '--show-dir', show], data_root, cwd=tmp_path)
    assert proc.returncode == 0, describe(proc)
    log = proc.stdout + proc.stderr
    assert logged_metric(log, 'mIoU') == pytest.approx(
        logged_metric(train.stdout + train.stderr, 'mIoU'), abs=1e-2)
    with open(out, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == NUM_VAL
    assert all('pred_sem_seg' in r and 'seg_logits' not in r for r in results)
    assert tuple(results[0]['pred_sem_seg']['data'].shape[-2:]) == (128, 128)
    painted = list(show.glob('vis_data/vis_image/*.png'))
    assert len(painted) == NUM_VAL


# ------------------------------------------------------------------------------------------
# in-process: the library behind the tools (rexnet_backbones.engine)
# ------------------------------------------------------------------------------------------
from rexnet_backbones.errors import ToolError  # noqa: E402
from rexnet_backbones.engine import config as engine_config  # noqa: E402
from rexnet_backbones.engine import runner as engine_runner  # noqa: E402


def test_train_cfg_defaults_and_overrides(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cfg = engine_runner.prepare_train_config(DET_CONFIG, cfg_options={'train_cfg.max_epochs': 3})
    assert cfg.work_dir == osp.join('./work_dirs', 'retinanet_tiny_synthetic')
    assert cfg.train_cfg.max_epochs == 3
    assert cfg.launcher == 'none' and cfg.resume is False
    cfg = engine_runner.prepare_train_config(DET_CONFIG, work_dir='wd', auto_scale_lr=True)
    assert cfg.work_dir == 'wd' and cfg.auto_scale_lr.enable is True


def test_train_resume_named_checkpoint(tmp_path):
    ckpt = tmp_path / 'x.pth'
    ckpt.write_bytes(b'')
    cfg = engine_runner.prepare_train_config(DET_CONFIG, resume=str(ckpt))
    assert cfg.resume is True and cfg.load_from == str(ckpt)
    with pytest.raises(ToolError, match=r'--resume .*missing\.pth: checkpoint not found'):
        engine_runner.prepare_train_config(DET_CONFIG, resume=str(tmp_path / 'missing.pth'))


def test_train_auto_scale_lr_without_config_entry_fails():
    with pytest.raises(ToolError, match='the config has no auto_scale_lr'):
        engine_runner.prepare_train_config(SEG_CONFIG, auto_scale_lr=True)


def test_train_amp():
    cfg = engine_runner.prepare_train_config(DET_CONFIG, amp=True)
    if engine_config.accelerator_available():
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
        assert cfg.optim_wrapper.loss_scale == 'dynamic'
    else:  # mmengine's AmpOptimWrapper refuses the CPU: ours autocasts in bfloat16 (documented)
        assert cfg.optim_wrapper.type == 'CpuAmpOptimWrapper' and cfg.optim_wrapper.dtype == 'bfloat16'
        from mmengine.optim import build_optim_wrapper
        model = torch.nn.Linear(2, 2)
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        with wrapper.optim_context(model):
            assert model(torch.randn(1, 2)).dtype == torch.bfloat16
        # a config naming mmengine's AmpOptimWrapper itself still needs a GPU: a clear error, no fallback
        with pytest.raises(ToolError, match='optim_wrapper.type=AmpOptimWrapper needs a GPU'):
            engine_runner.prepare_train_config(DET_CONFIG, cfg_options={'optim_wrapper.type': 'AmpOptimWrapper'})
        # mmcv's CPU nms/roi_align (in a two-stage detector's training step) have no bfloat16 kernels
        faster = osp.join(REPO_ROOT, 'configs', 'det', 'faster-rcnn_rexnet.py')
        with pytest.raises(ToolError, match="--amp on the CPU: this two-stage detector's training step"):
            engine_runner.prepare_train_config(faster, amp=True)


def test_test_out_must_be_pickle_for_mmdet():
    with pytest.raises(ToolError, match=r'--out must name a \.pkl/\.pickle file'):
        engine_runner.prepare_test_config(DET_CONFIG, 'c.pth', out='res.json')
    # mmseg keeps its own meaning of a non-pickle --out: IoUMetric's output directory
    cfg = engine_runner.prepare_test_config(SEG_CONFIG, 'c.pth', out='preds')
    assert cfg.test_evaluator.output_dir == 'preds' and cfg.test_evaluator.keep_results
    assert cfg.load_from == 'c.pth'


def test_cpu_distributed_setup(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip('checks the CPU-only (gloo) path')
    import torch.distributed as dist
    from mmengine.config import Config
    from rexnet_backbones.engine.distributed import setup_cpu_distributed, shutdown_distributed
    assert not dist.is_initialized()
    for key, value in dict(RANK='0', WORLD_SIZE='1', LOCAL_RANK='0', MASTER_ADDR='127.0.0.1',
                           MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(key, value)
    cfg = Config.fromfile(SEG_CONFIG)  # mmseg base: dist_cfg nccl, SyncBN in the base model
    cfg.model.auxiliary_head = dict(type='FCNHead', norm_cfg=dict(type='SyncBN'))
    cfg.launcher = 'pytorch'
    try:
        assert setup_cpu_distributed(cfg) is True
        assert dist.is_initialized() and dist.get_backend() == 'gloo'
        assert cfg.env_cfg.dist_cfg.backend == 'gloo'
        assert cfg.model_wrapper_cfg.type == 'MMDistributedDataParallel'
        assert 'device_ids' in cfg.model_wrapper_cfg and cfg.model_wrapper_cfg.device_ids is None
        assert cfg.model.auxiliary_head.norm_cfg.type == 'BN'
    finally:
        shutdown_distributed()
    assert not dist.is_initialized()  # the shutdown destroyed the process group
    cfg.launcher = 'slurm'
    with pytest.raises(ToolError, match='--launcher slurm needs GPUs'):
        setup_cpu_distributed(cfg)
    cfg.launcher = 'none'
    assert setup_cpu_distributed(cfg) is False


# ------------------------------------------------------------------------------------------
# in-process: dataset check
# ------------------------------------------------------------------------------------------
def _load_cfg(path, root, monkeypatch):
    from mmengine.config import Config
    monkeypatch.setenv('SYNTHETIC_DATA_ROOT', str(root))
    return Config.fromfile(path)


def test_dataset_check_passes_on_synthetic_data(data_root, monkeypatch):
    from rexnet_backbones.data import check_dataset_paths, find_missing_dataset_paths
    for config in (DET_CONFIG, SEG_CONFIG):
        cfg = _load_cfg(config, data_root, monkeypatch)
        assert find_missing_dataset_paths(cfg) == []
        check_dataset_paths(cfg)  # no exception


def test_dataset_check_names_every_missing_path(tmp_path, monkeypatch):
    from rexnet_backbones.data import check_dataset_paths, find_missing_dataset_paths
    from rexnet_backbones.errors import DatasetNotFoundError
    cfg = _load_cfg(DET_CONFIG, tmp_path / 'none', monkeypatch)
    found = {(m.key, m.field): m.path for m in find_missing_dataset_paths(cfg, ['test'])}
    root = str(tmp_path / 'none' / 'coco') + '/'
    assert found == {
        ('test_dataloader.dataset', 'data_root'): root,
        ('test_dataloader.dataset', 'ann_file'): root + 'annotations/instances_val2017.json',
        ('test_dataloader.dataset', 'data_prefix.img'): root + 'val2017/',
        ('test_evaluator', 'ann_file'): root + 'annotations/instances_val2017.json',
    }
    with pytest.raises(DatasetNotFoundError) as e:
        check_dataset_paths(cfg, ['test'])
    msg = str(e.value)
    assert root + 'val2017/' in msg and 'make_synthetic_data.py' in msg
    assert 'test_evaluator.ann_file=/path/to/dataset/annotations/instances_val2017.json' in msg
    assert 'ln -s /path/to/dataset data/coco' in msg


def test_dataset_check_seg_wrappers_and_remote(tmp_path, monkeypatch, data_root):
    from rexnet_backbones.data import check_dataset_paths, find_missing_dataset_paths
    from rexnet_backbones.errors import DatasetNotFoundError
    cfg = _load_cfg(SEG_CONFIG, data_root, monkeypatch)
    good = cfg.train_dataloader.dataset
    bad = dict(good, data_root=str(tmp_path / 'ade'))
    cfg.train_dataloader.dataset = dict(
        type='ConcatDataset',
        datasets=[good, dict(type='RepeatDataset', times=2, dataset=bad)])
    missing = find_missing_dataset_paths(cfg, ['train'])
    assert {m.key for m in missing} == {'train_dataloader.dataset.datasets.1.dataset'}
    assert {m.field for m in missing} == {'data_root', 'data_prefix.img_path',
                                          'data_prefix.seg_map_path'}
    with pytest.raises(DatasetNotFoundError, match='fpn_tiny_synthetic_seg'):
        check_dataset_paths(cfg, ['train'])
    # remote storage is not checked
    cfg.train_dataloader.dataset = dict(bad, data_root='s3://bucket/ade')
    assert find_missing_dataset_paths(cfg, ['train']) == []
    cfg.train_dataloader.dataset = dict(bad, backend_args=dict(backend='petrel'))
    assert find_missing_dataset_paths(cfg, ['train']) == []


def test_dataset_check_split_selection(data_root, monkeypatch):
    from rexnet_backbones.data.checks import splits_for_training
    cfg = _load_cfg(DET_CONFIG, data_root, monkeypatch)
    assert splits_for_training(cfg) == ['train', 'val']
    cfg.val_cfg = None
    assert splits_for_training(cfg) == ['train']


def test_trust_checkpoint_flag_calls_enable_trusted_loading(monkeypatch, tmp_path):
    from rexnet_backbones.errors import DatasetNotFoundError
    calls = []
    monkeypatch.setattr(engine_config, 'enable_trusted_loading', lambda: calls.append(1))
    monkeypatch.setenv('SYNTHETIC_DATA_ROOT', str(tmp_path / 'none'))
    with pytest.raises(DatasetNotFoundError):  # stops at the dataset check, after the flag was handled
        engine_runner.train(DET_CONFIG, work_dir=str(tmp_path / 'wd'), trust_checkpoint=True)
    assert calls == [1]
    calls.clear()
    with pytest.raises(DatasetNotFoundError):
        engine_runner.train(DET_CONFIG, work_dir=str(tmp_path / 'wd'))
    assert calls == []


def test_dataset_check_mentions_env_variables_of_base_configs(tmp_path, monkeypatch):
    from mmengine.config import Config
    from rexnet_backbones.data import check_dataset_paths
    from rexnet_backbones.errors import DatasetNotFoundError
    child = tmp_path / 'child.py'
    child.write_text(f'_base_ = {osp.relpath(DET_CONFIG, tmp_path)!r}\n'
                     'train_cfg = dict(max_epochs=2)\n')
    monkeypatch.setenv('SYNTHETIC_DATA_ROOT', str(tmp_path / 'none'))
    cfg = Config.fromfile(str(child))
    with pytest.raises(DatasetNotFoundError, match="SYNTHETIC_DATA_ROOT \\(default 'data/synthe"):
        check_dataset_paths(cfg, ['train'])


def test_tta_config_transform():
    cfg = engine_runner.prepare_test_config(DET_CONFIG, 'c.pth')
    inner_model_type = cfg.model.type
    with pytest.warns(UserWarning):  # mmdet's defaults are used, with a warning (as mmdet does)
        engine_config.apply_tta(cfg, 'mmdet')
    assert cfg.model.type == 'DetTTAModel' and cfg.model.module.type == inner_model_type
    pipeline = cfg.test_dataloader.dataset.pipeline
    assert pipeline[-1]['type'] == 'TestTimeAug' and pipeline[0]['type'] == 'LoadImageFromFile'
    seg = engine_runner.prepare_test_config(SEG_CONFIG, 'c.pth')
    with pytest.raises(ToolError, match='--tta needs tta_model and tta_pipeline'):
        engine_config.apply_tta(seg, 'mmseg')
