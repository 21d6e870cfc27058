"""A GPU user's training run, emulated on the CPU: ``tools/train.py --amp`` with ``sync_bn='torch'`` through
torchrun (``tools/dist_train.sh``, gloo), against the same training without those options.

What runs is what a GPU user runs, with the CPU's counterparts: ``--amp`` is bfloat16 autocast
(``CpuAmpOptimWrapper``; on a GPU mmengine's ``AmpOptimWrapper``, float16), mmengine's Runner converts the model
for ``sync_bn='torch'`` as on GPUs, and the converted ``nn.SyncBatchNorm`` layers synchronize over gloo
(``GlooSyncBNDistributedDataParallel``). The tiny RetinaNet trains its backbone with ``norm_eval=True`` (as the
COCO configs), so its BatchNorm layers use running statistics and the losses of the converted network must equal
the plain network's up to bfloat16 rounding.

Tolerance: every logged loss within 2 % (relative) of the plain fp32 run. Measured here: bfloat16 autocast moves
the four losses of the tiny RetinaNet by 0.2 %; a conversion that drops ReXNet's activations moves the first
one by 68 %.
"""
import glob
import json
import os.path as osp
import sys

import pytest
import torch

from _helpers_tools import TEST_CONFIGS, TOOLS, describe, free_port, run, run_tool

CHECK_CONFIG = osp.join(TEST_CONFIGS, 'retinanet_tiny_synthetic_check.py')
#: relative tolerance of a logged loss against the plain fp32 run's (see the module)
LOSS_RTOL = 0.02
BATCH = ['train_dataloader.batch_size=1']  # 8 iterations on one process, 4 on two


def _losses(work_dir) -> list:
    """The logged losses of a run (rank 0's), from <work_dir>/<timestamp>/vis_data/scalars.json."""
    (path,) = glob.glob(osp.join(str(work_dir), '2*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r['loss'] for r in records if 'loss' in r]


def _conversion(work_dir, rank: int = 0) -> dict:
    with open(osp.join(str(work_dir), f'rank{rank}_conversion.json')) as f:
        return json.load(f)


def _assert_network_kept(conv: dict) -> None:
    """The backbone as the Runner left it computes what a freshly built one with its weights computes, with as
    many activation calls and no parameter or buffer lost."""
    assert conv['missing_keys'] == [] and conv['unexpected_keys'] == []
    assert conv['activation_calls'] == conv['reference_activation_calls'] > 0, conv
    assert conv['max_abs_diff'] < 1e-5, conv


@pytest.fixture(scope='module')
def plain_run(data_root, tmp_path_factory):
    """``tools/train.py`` of the tiny RetinaNet: one process, fp32, no sync_bn; batch 1."""
    tmp = tmp_path_factory.mktemp('plain')
    proc = run_tool('train.py', [CHECK_CONFIG, '--work-dir', tmp / 'wd', '--cfg-options', *BATCH], data_root,
                    tmp, timeout=400)
    assert proc.returncode == 0, describe(proc)
    conv = _conversion(tmp / 'wd')
    assert conv['wrapper'] != 'GlooSyncBNDistributedDataParallel'
    _assert_network_kept(conv)
    losses = _losses(tmp / 'wd')
    assert len(losses) == 8
    return losses


def _emulated_gpu_run(nproc: int, data_root, tmp_path):
    work_dir = tmp_path / f'gpu{nproc}'
    proc = run(['bash', osp.join(TOOLS, 'dist_train.sh'), CHECK_CONFIG, nproc, '--amp', '--work-dir', work_dir,
                '--cfg-options', 'sync_bn=torch', *BATCH], data_root, cwd=tmp_path, timeout=400,
               PYTHON=sys.executable, PORT=free_port())
    assert proc.returncode == 0, describe(proc)
    log = proc.stdout + proc.stderr
    if not torch.cuda.is_available():
        assert 'bfloat16 autocast on the CPU (CpuAmpOptimWrapper)' in log
        assert "sync_bn='torch' synchronizes BatchNorm over gloo" in log
        assert f'rank 0 of {nproc}, backend gloo' in log
    for rank in range(nproc):
        conv = _conversion(work_dir, rank)
        assert conv['world_size'] == nproc and conv['wrapper'] == 'GlooSyncBNDistributedDataParallel'
        # mmengine converted every BatchNorm of the backbone, then the wrapper made them gloo-capable
        assert conv['types'].get('GlooSyncBatchNorm', 0) > 0
        assert 'BatchNorm2d' not in conv['types'] and 'SyncBatchNorm' not in conv['types']
        _assert_network_kept(conv)
    return _losses(work_dir)


@pytest.mark.slow
def test_amp_sync_bn_torchrun_one_process_losses_match_plain_training(plain_run, data_root, tmp_path):
    """torchrun with one process (distributed: the Runner converts for sync_bn), --amp: the same 8 images in the
    same order as the plain run, so every loss matches."""
    losses = _emulated_gpu_run(1, data_root, tmp_path)
    assert len(losses) == len(plain_run)
    assert losses == pytest.approx(plain_run, rel=LOSS_RTOL)


@pytest.mark.slow
def test_amp_sync_bn_torchrun_two_processes_first_loss_matches_plain_training(plain_run, data_root, tmp_path):
    """Two gloo processes, --amp, sync_bn: rank 0's first image is the plain run's first (the same shuffled order,
    split over the ranks), and before the first update the weights are the same, so the first loss matches; later
    steps average two images' gradients and differ by design."""
    losses = _emulated_gpu_run(2, data_root, tmp_path)
    assert len(losses) == 4  # 8 images / (2 ranks x batch 1)
    assert losses[0] == pytest.approx(plain_run[0], rel=LOSS_RTOL)


# ------------------------------------------------------------------------------------------
# GlooSyncBatchNorm: two gloo processes normalize as one BatchNorm over their joined batches
# ------------------------------------------------------------------------------------------
def _sync_bn_worker(rank: int, world_size: int, init_file: str, out_file: str) -> None:
    import torch.distributed as dist
    import torch.nn as nn

    from rexnet_backbones.engine.sync_bn import GlooSyncBNDistributedDataParallel  # noqa: F401
    from rexnet_backbones.engine.sync_bn import use_gloo_sync_batchnorm
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=world_size)
    try:
        x, w, weight, bias = _sync_bn_inputs()
        model = nn.Sequential(nn.SyncBatchNorm(x.shape[1]))
        with torch.no_grad():
            model[0].weight.copy_(weight)
            model[0].bias.copy_(bias)
        assert use_gloo_sync_batchnorm(model) == 1
        part = x.chunk(world_size)[rank].clone().requires_grad_(True)
        y = model(part)
        (y * w.chunk(world_size)[rank]).sum().backward()
        got = dict(y=y.detach(), x_grad=part.grad, weight_grad=model[0].weight.grad, bias_grad=model[0].bias.grad,
                   running_mean=model[0].running_mean.clone(), running_var=model[0].running_var.clone())
        with torch.autocast('cpu', dtype=torch.bfloat16):
            got['y16_dtype'] = str(model(part.detach().bfloat16()).dtype)
        torch.save(got, f'{out_file}.{rank}')
    finally:
        dist.destroy_process_group()


def _sync_bn_inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, 5, 7, generator=g) * 3 + 1
    return x, torch.randn(x.shape, generator=g), torch.rand(6, generator=g) + 0.5, torch.randn(6, generator=g)


@pytest.mark.slow
def test_gloo_sync_batchnorm_two_processes_equal_one_batchnorm_over_the_joined_batch(tmp_path):
    import torch.multiprocessing as mp
    import torch.nn as nn
    out = str(tmp_path / 'out')
    mp.spawn(_sync_bn_worker, args=(2, str(tmp_path / 'init'), out), nprocs=2, join=True)
    ranks = [torch.load(f'{out}.{r}') for r in (0, 1)]
    x, w, weight, bias = _sync_bn_inputs()
    bn = nn.BatchNorm2d(6)
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
    xr = x.clone().requires_grad_(True)
    y = bn(xr)
    (y * w).sum().backward()
    tol = dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat([r['y'] for r in ranks]), y.detach(), **tol)
    torch.testing.assert_close(torch.cat([r['x_grad'] for r in ranks]), xr.grad, **tol)
    # each rank holds its own batch's share of the parameter gradients (DDP then averages them)
    torch.testing.assert_close(ranks[0]['weight_grad'] + ranks[1]['weight_grad'], bn.weight.grad, **tol)
    torch.testing.assert_close(ranks[0]['bias_grad'] + ranks[1]['bias_grad'], bn.bias.grad, **tol)
    for r in ranks:
        torch.testing.assert_close(r['running_mean'], bn.running_mean, **tol)
        torch.testing.assert_close(r['running_var'], bn.running_var, **tol)
        assert r['y16_dtype'] == 'torch.bfloat16'  # under autocast: the input's dtype, as torch's BatchNorm
