"""A check of a GPU set-up, what ``make gpu-check`` (``tools/gpu_check.py``) runs.

On a machine with a GPU:

* mmcv's ``nms``, ``roi_align`` and ``sigmoid_focal_loss`` on CUDA, against CPU results (mmcv's CPU
  ``nms``/``roi_align``; torchvision's pure-PyTorch ``sigmoid_focal_loss``, as mmcv has no CPU kernel);
* one training step each of RetinaNet and Faster R-CNN (ReXNet-1.0x) on the synthetic set, with
  ``--amp``, ``SyncBN`` in the backbone and torchrun on one GPU (``tools/dist_train.sh CONFIG 1``),
  then ``tools/test.py`` on the checkpoint it wrote.

Without a GPU nothing is checked (the caller says so and exits 0).
"""
from __future__ import annotations

import os
import os.path as osp
import subprocess
import sys
import traceback
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence

__all__ = ['Check', 'gpu_available', 'check_ops', 'synthetic_config', 'check_training', 'format_table',
           'run_gpu_check']

#: config keys of the synthetic RetinaNet config that make up "the data and the schedule"
DATA_KEYS = ('train_pipeline', 'test_pipeline', 'train_dataloader', 'val_dataloader', 'test_dataloader',
             'val_evaluator', 'test_evaluator', 'train_cfg', 'optim_wrapper', 'param_scheduler',
             'auto_scale_lr', 'default_hooks', 'randomness')


@dataclass
class Check:
    """One row of the table: what was checked, whether it passed, and a short detail."""
    name: str
    ok: bool
    detail: str = ''


def gpu_available() -> bool:
    import torch
    return torch.cuda.is_available() and torch.cuda.device_count() > 0


def _run(name: str, fn: Callable[[], str]) -> Check:
    try:
        return Check(name, True, fn())
    except Exception as e:  # noqa: BLE001 - every failure becomes a row of the table
        last = traceback.format_exception_only(type(e), e)[-1].strip()
        return Check(name, False, last.splitlines()[0][:200])


def _nms() -> str:
    import torch
    from mmcv.ops import nms
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(500, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + 8 + torch.rand(500, 2, generator=g) * 40], 1)
    scores = torch.rand(500, generator=g)
    dets_cpu, keep_cpu = nms(boxes, scores, 0.5)
    dets_gpu, keep_gpu = nms(boxes.cuda(), scores.cuda(), 0.5)
    if not torch.equal(keep_cpu, keep_gpu.cpu()):
        raise AssertionError(f'kept boxes differ: {len(keep_cpu)} on CPU, {len(keep_gpu)} on CUDA')
    torch.testing.assert_close(dets_gpu.cpu(), dets_cpu)
    return f'{len(keep_cpu)} of 500 boxes kept on both'


def _roi_align() -> str:
    import torch
    from mmcv.ops import roi_align
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 16, 32, 32, generator=g)
    xy = torch.rand(64, 2, generator=g) * 100
    rois = torch.cat([torch.randint(0, 2, (64, 1), generator=g).float(), xy,
                      xy + 4 + torch.rand(64, 2, generator=g) * 24], 1)
    args = ((7, 7), 0.25, 2, 'avg', True)
    cpu = roi_align(feats, rois, *args)
    gpu = roi_align(feats.cuda(), rois.cuda(), *args).cpu()
    torch.testing.assert_close(gpu, cpu, atol=1e-5, rtol=1e-4)
    return f'64 RoIs, max |CUDA - CPU| = {(gpu - cpu).abs().max().item():.1e}'


def _sigmoid_focal_loss() -> str:
    import torch
    import torch.nn.functional as F
    from mmcv.ops import sigmoid_focal_loss
    from torchvision.ops import sigmoid_focal_loss as reference
    g = torch.Generator().manual_seed(0)
    num_classes = 8
    logits = torch.randn(256, num_classes, generator=g)
    labels = torch.randint(0, num_classes + 1, (256,), generator=g)  # num_classes: background
    got = sigmoid_focal_loss(logits.cuda(), labels.cuda(), 2.0, 0.25, None, 'sum').cpu()
    one_hot = F.one_hot(labels, num_classes + 1)[:, :num_classes].float()
    expected = reference(logits, one_hot, alpha=0.25, gamma=2.0, reduction='sum')
    torch.testing.assert_close(got, expected, atol=1e-3, rtol=1e-4)
    return f'sum {got.item():.4f} (CPU reference {expected.item():.4f})'


def check_ops() -> List[Check]:
    """mmcv's CUDA kernels: the installed mmcv, then ``nms``, ``roi_align``, ``sigmoid_focal_loss``."""
    from .env import mmcv_problem

    def kernels() -> str:
        problem = mmcv_problem(cuda_available=True)
        if problem:
            raise RuntimeError(problem)
        import mmcv
        from mmcv.ops import get_compiling_cuda_version
        return f'mmcv {mmcv.__version__}, ops compiled with CUDA {get_compiling_cuda_version()}'

    checks = [_run('mmcv ops have CUDA kernels', kernels)]
    for name, fn in (('nms CUDA == CPU', _nms), ('roi_align CUDA == CPU', _roi_align),
                     ('sigmoid_focal_loss CUDA == CPU', _sigmoid_focal_loss)):
        checks.append(_run(name, fn))
    return checks


def synthetic_config(model_config: str, data_config: str, out_file: str, data_root: str,
                     num_classes: int = 3) -> str:
    """``model_config``'s model with ``data_config``'s data and schedule (:data:`DATA_KEYS`), written to
    ``out_file``; the head's ``num_classes`` set for the synthetic set. ``data_root`` is what the written
    config reads (the synthetic configs' ``$SYNTHETIC_DATA_ROOT``). Returns ``out_file``."""
    from mmengine.config import Config
    cfg = Config.fromfile(model_config)
    saved = os.environ.get('SYNTHETIC_DATA_ROOT')
    os.environ['SYNTHETIC_DATA_ROOT'] = data_root  # resolved when the config is read
    try:
        data = Config.fromfile(data_config)
    finally:
        if saved is None:
            os.environ.pop('SYNTHETIC_DATA_ROOT')
        else:
            os.environ['SYNTHETIC_DATA_ROOT'] = saved
    for key in DATA_KEYS:
        if key in data:
            cfg[key] = data[key]
    cfg.optim_wrapper = data.optim_wrapper
    # no ImageNet weights needed (as the synthetic configs): train everything
    cfg.model.backbone.update(init_cfg=None, frozen_stages=-1, norm_eval=False)
    heads = [cfg.model.get('bbox_head')] + [cfg.model.get('roi_head', {}).get('bbox_head')]
    for head in heads:
        if head is not None:
            head['num_classes'] = num_classes
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    cfg.dump(out_file)
    return out_file


def _tool_output(cmd: Sequence[str], env: Dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)


def check_training(configs: Dict[str, str], tools_dir: str, work_dir: str, data_root: str,
                   timeout: float = 900, amp: bool = True) -> List[Check]:
    """For each ``name: config``: one ``--amp`` training step with a SyncBN backbone through
    ``tools/dist_train.sh CONFIG 1`` (torchrun), then ``tools/test.py`` on its checkpoint.

    ``amp=False`` runs the same steps without ``--amp`` (which needs a GPU), e.g. on a CPU."""
    env = dict(os.environ, SYNTHETIC_DATA_ROOT=data_root, PYTHON=sys.executable,
               PYTHONWARNINGS='ignore')
    checks = []
    for port, (name, config) in enumerate(configs.items(), start=29610):
        wd = osp.join(work_dir, name)
        amp_flag = ['--amp'] if amp else []
        train = _tool_output(
            ['bash', osp.join(tools_dir, 'dist_train.sh'), config, '1', *amp_flag, '--work-dir', wd,
             '--cfg-options', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
             'train_dataloader.batch_size=2', 'model.backbone.norm_cfg.type=SyncBN',
             'default_hooks.checkpoint.interval=1'],
            dict(env, PORT=str(port)), timeout)
        ckpt = osp.join(wd, 'epoch_1.pth')
        ok = train.returncode == 0 and osp.isfile(ckpt)
        detail = 'epoch_1.pth written' if ok else _tail(train.stdout)
        checks.append(Check(f'{name}: 1 step,{" --amp," if amp else ""} SyncBN, torchrun', ok, detail))
        if not ok:
            checks.append(Check(f'{name}: tools/test.py', False, 'skipped: no checkpoint'))
            continue
        test = _tool_output([sys.executable, osp.join(tools_dir, 'test.py'), config, ckpt,
                             '--work-dir', osp.join(wd, 'test')], env, timeout)
        checks.append(Check(f'{name}: tools/test.py', *_test_result(test)))
    return checks


def _test_result(test: subprocess.CompletedProcess):
    """(ok, detail) of a ``tools/test.py`` run: it evaluated the test set (after one training step the
    detector may find nothing yet, and CocoMetric then logs no mAP)."""
    lines = test.stdout.splitlines()
    if test.returncode != 0 or not any('Epoch(test)' in line for line in lines):
        return False, _tail(test.stdout)
    metric = [line.split('coco/bbox_mAP:')[1].split()[0] for line in lines if 'coco/bbox_mAP:' in line]
    return True, f'bbox_mAP {metric[-1]}' if metric else 'evaluated; no detections yet after 1 step'


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else '(no output)'


def format_table(checks: Sequence[Check]) -> str:
    width = max(len(c.name) for c in checks)
    rows = [f'{"check":<{width}}  result  detail', f'{"-" * width}  ------  ------']
    rows += [f'{c.name:<{width}}  {"pass" if c.ok else "FAIL":<6}  {c.detail}' for c in checks]
    return '\n'.join(rows)


def run_gpu_check(configs_dir: str, tools_dir: str, work_dir: str, cpu: bool = False) -> int:
    """The whole check; prints the table and returns the exit code (0: all passed, or no GPU).

    ``cpu=True`` on a machine without a GPU runs only the training and test steps, without ``--amp``
    (a dry run of the harness: it checks nothing about CUDA)."""
    import torch
    if not gpu_available() and not cpu:
        print(f'no GPU visible (torch {torch.__version__}, CUDA {torch.version.cuda or "none"}): nothing was '
              'checked. Run `make gpu-check` on a machine with a GPU.')
        return 0
    from ..data.synthetic import make_coco_detection
    if gpu_available():
        print(f'GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__} (CUDA {torch.version.cuda})',
              flush=True)
        checks = check_ops()
    else:
        print('no GPU visible: --cpu runs the training and test steps on CPU without --amp; CUDA is not checked',
              flush=True)
        checks = []
    data_root = osp.join(work_dir, 'data')
    make_coco_detection(osp.join(data_root, 'coco'), num_train=2, num_val=2, seed=0)
    det = osp.join(configs_dir, 'det')
    retinanet = osp.join(det, 'retinanet_rexnet_synthetic.py')
    faster = synthetic_config(osp.join(det, 'faster-rcnn_rexnet.py'), retinanet,
                              osp.join(work_dir, 'faster-rcnn_rexnet_synthetic.py'), data_root)
    checks += check_training({'RetinaNet': retinanet, 'Faster R-CNN': faster}, tools_dir, work_dir, data_root,
                             amp=gpu_available())
    print(format_table(checks))
    failed = sum(not c.ok for c in checks)
    print(f'{len(checks) - failed} of {len(checks)} checks passed')
    return 1 if failed else 0
