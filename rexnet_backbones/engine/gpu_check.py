"""A check of a GPU set-up, what ``make gpu-check`` (``tools/gpu_check.py``) runs.

On a machine with a GPU:

* mmcv's ``nms``, ``roi_align`` and ``sigmoid_focal_loss`` on CUDA, against CPU results (mmcv's CPU
  ``nms``/``roi_align``; torchvision's pure-PyTorch ``sigmoid_focal_loss``, as mmcv has no CPU kernel);
* one training step each of RetinaNet, Faster R-CNN, Mask R-CNN and Semantic FPN (ReXNet-1.0x) on tiny
  synthetic sets made on the machine, as a GPU user trains: ``--amp`` (mmengine's ``AmpOptimWrapper``, float16),
  ``sync_bn='torch'`` and torchrun (``tools/dist_train.sh CONFIG NPROC``); each must log a finite loss and
  write its checkpoint; then ``tools/test.py`` on that checkpoint.

``cpu=True`` runs the same steps on the CPU with the CPU's counterparts: ``--amp`` is bfloat16 autocast
(``CpuAmpOptimWrapper``; Faster and Mask R-CNN train in fp32 there, as mmcv's CPU ``nms`` and ``roi_align`` have
no bfloat16 kernels), torchrun's backend is gloo and the ``sync_bn`` layers synchronize over gloo; the ops are
checked against torchvision's (``nms``, ``roi_align``; mmcv has no CPU ``sigmoid_focal_loss``). Without a GPU and
without ``cpu=True`` nothing is checked (the caller says so and exits 0).

Every step's output goes to a log under ``<work_dir>/logs``; the table (markdown), a JSON summary (versions,
the device, the bundle install and mmcv build times, each step's time, the total) and the logs (one
``.tar.gz``) are written to ``out_dir``.
"""
from __future__ import annotations

import json
import math
import os
import os.path as osp
import platform
import re
import subprocess
import sys
import tarfile
import time
import traceback
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

__all__ = ['Check', 'gpu_available', 'check_ops', 'synthetic_config', 'check_training', 'format_table',
           'run_gpu_check', 'MODELS']

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
    seconds: float = 0.0


def gpu_available() -> bool:
    import torch
    return torch.cuda.is_available() and torch.cuda.device_count() > 0


def _run(name: str, fn: Callable[[], str]) -> Check:
    t0 = time.time()
    try:
        return Check(name, True, fn(), round(time.time() - t0, 1))
    except Exception as e:  # noqa: BLE001 - every failure becomes a row of the table
        last = traceback.format_exception_only(type(e), e)[-1].strip()
        return Check(name, False, last.splitlines()[0][:200], round(time.time() - t0, 1))


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


def _nms_cpu() -> str:
    import torch
    from mmcv.ops import nms
    from torchvision.ops import nms as reference
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(500, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + 8 + torch.rand(500, 2, generator=g) * 40], 1)
    scores = torch.rand(500, generator=g)
    _, keep = nms(boxes, scores, 0.5)
    expected = reference(boxes, scores, 0.5)
    if not torch.equal(keep, expected):
        raise AssertionError(f'kept boxes differ: {len(keep)} by mmcv, {len(expected)} by torchvision')
    return f'{len(keep)} of 500 boxes kept by both'


def _roi_align_cpu() -> str:
    import torch
    from mmcv.ops import roi_align
    from torchvision.ops import roi_align as reference
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 16, 32, 32, generator=g)
    xy = torch.rand(64, 2, generator=g) * 100
    rois = torch.cat([torch.randint(0, 2, (64, 1), generator=g).float(), xy,
                      xy + 4 + torch.rand(64, 2, generator=g) * 24], 1)
    got = roi_align(feats, rois, (7, 7), 0.25, 2, 'avg', True)
    expected = reference(feats, rois, (7, 7), 0.25, 2, aligned=True)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    return f'64 RoIs, max |mmcv - torchvision| = {(got - expected).abs().max().item():.1e}'


def check_ops_cpu() -> List[Check]:
    """mmcv's CPU kernels against torchvision's (mmcv has no CPU ``sigmoid_focal_loss``)."""
    return [_run('nms CPU == torchvision', _nms_cpu), _run('roi_align CPU == torchvision', _roi_align_cpu)]


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


#: the trained models: name -> (config under configs/, kind); Faster and Mask R-CNN get the RetinaNet
#: synthetic config's data and schedule (:func:`synthetic_config`)
MODELS = {'RetinaNet': ('det/retinanet_rexnet_synthetic.py', 'det'),
          'Faster R-CNN': ('det/faster-rcnn_rexnet.py', 'det'),
          'Mask R-CNN': ('det/mask-rcnn_rexnet.py', 'mask'),
          'Semantic FPN': ('seg/fpn_rexnet_synthetic.py', 'seg')}


def synthetic_config(model_config: str, data_config: str, out_file: str, data_root: str,
                     num_classes: int = 3, with_mask: bool = False) -> str:
    """``model_config``'s model with ``data_config``'s data and schedule (:data:`DATA_KEYS`), written to
    ``out_file``; the head's ``num_classes`` set for the synthetic set. ``data_root`` is what the written
    config reads (the synthetic configs' ``$SYNTHETIC_DATA_ROOT``). ``with_mask``: the training pipeline
    loads the instance masks and the evaluators also score them (Mask R-CNN). Returns ``out_file``."""
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
    heads = [cfg.model.get('bbox_head')] + [cfg.model.get('roi_head', {}).get('bbox_head')] + \
        [cfg.model.get('roi_head', {}).get('mask_head')]
    for head in heads:
        if head is not None:
            head['num_classes'] = num_classes
    if with_mask:
        for step in cfg.train_dataloader.dataset.pipeline:
            if step['type'] == 'LoadAnnotations':
                step['with_mask'] = True
        for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
            evaluator['metric'] = ['bbox', 'segm']
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    cfg.dump(out_file)
    return out_file


def _tool_output(cmd: Sequence[str], env: Dict[str, str], timeout: float, log_file: str) -> subprocess.CompletedProcess:
    """Run ``cmd``; its output goes to ``log_file`` (and is returned)."""
    try:
        proc = subprocess.run(list(cmd), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors='replace') if isinstance(e.stdout, bytes) else (e.stdout or '')
        proc = subprocess.CompletedProcess(list(cmd), 124, out + f'\ntimed out after {timeout:.0f} s\n')
    with open(log_file, 'w', encoding='utf-8') as f:
        f.write('$ ' + ' '.join(cmd) + '\n' + proc.stdout)
    return proc


_SCHEDULE = {
    'det': ['train_cfg.max_epochs=1', 'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=1'],
    'mask': ['train_cfg.max_epochs=1', 'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=1'],
    'seg': ['train_cfg.max_iters=1', 'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=1',
            'default_hooks.checkpoint.by_epoch=False'],
}
_CHECKPOINT = {'det': 'epoch_1.pth', 'mask': 'epoch_1.pth', 'seg': 'iter_1.pth'}
_LOADERS = ['train_dataloader', 'val_dataloader', 'test_dataloader']


def _slug(name: str) -> str:
    return re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-').lower()


def _losses(text: str) -> List[float]:
    return [float(v) for v in re.findall(r'\bloss: (-?[0-9.]+|nan|inf)', text)]


def check_training(configs: Dict[str, Any], tools_dir: str, work_dir: str, data_root: str,
                   timeout: float = 900, amp: bool = True, nproc: int = 1, log_dir: Optional[str] = None,
                   port: int = 29610, amp_models: Optional[Sequence[str]] = None) -> List[Check]:
    """For each ``name: (config, kind)`` (or ``name: config``, a detector): one training step through
    ``tools/dist_train.sh CONFIG NPROC`` (torchrun) with ``--amp`` (``amp_models``: only for those names) and
    ``sync_bn='torch'``, which must log finite losses and write its checkpoint, then ``tools/test.py`` on that
    checkpoint."""
    env = dict(os.environ, SYNTHETIC_DATA_ROOT=data_root, PYTHON=sys.executable, PYTHONWARNINGS='ignore')
    log_dir = log_dir or osp.join(work_dir, 'logs')
    os.makedirs(log_dir, exist_ok=True)
    checks = []
    for i, (name, spec) in enumerate(configs.items()):
        config, kind = spec if isinstance(spec, tuple) else (spec, 'det')
        wd = osp.join(work_dir, _slug(name))
        with_amp = amp and (amp_models is None or name in amp_models)
        amp_flag = ['--amp'] if with_amp else []
        loaders = [f'{d}.{k}' for d in _LOADERS for k in ('num_workers=0', 'persistent_workers=False')]
        batch = ['train_dataloader.batch_size=2'] if kind != 'seg' else []
        t0 = time.time()
        train = _tool_output(
            ['bash', osp.join(tools_dir, 'dist_train.sh'), config, str(nproc), *amp_flag, '--work-dir', wd,
             '--cfg-options', 'sync_bn=torch', *_SCHEDULE[kind], *batch, *loaders],
            dict(env, PORT=str(port + i)), timeout, osp.join(log_dir, f'train_{_slug(name)}.log'))
        ckpt = osp.join(wd, _CHECKPOINT[kind])
        losses = _losses(train.stdout)
        finite = bool(losses) and all(math.isfinite(v) for v in losses)
        ok = train.returncode == 0 and osp.isfile(ckpt) and finite
        if ok:
            detail = f'loss {losses[0]:.4f}, {_CHECKPOINT[kind]} written'
        elif train.returncode == 0 and losses and not finite:
            detail = f'non-finite loss: {losses}'
        else:
            detail = _tail(train.stdout)
        what = ', '.join(x for x in ('--amp' if with_amp else 'fp32', 'sync_bn', f'torchrun x{nproc}') if x)
        checks.append(Check(f'{name}: 1 step, {what}', ok, detail, round(time.time() - t0, 1)))
        if not osp.isfile(ckpt):
            checks.append(Check(f'{name}: tools/test.py', False, 'skipped: no checkpoint'))
            continue
        t0 = time.time()
        test = _tool_output([sys.executable, osp.join(tools_dir, 'test.py'), config, ckpt,
                             '--work-dir', osp.join(wd, 'test')], env, timeout,
                            osp.join(log_dir, f'test_{_slug(name)}.log'))
        checks.append(Check(f'{name}: tools/test.py', *_test_result(test, kind), round(time.time() - t0, 1)))
    return checks


def _test_result(test: subprocess.CompletedProcess, kind: str = 'det'):
    """(ok, detail) of a ``tools/test.py`` run: it evaluated the test set (after one training step the
    detector may find nothing yet, and CocoMetric then logs no mAP)."""
    lines = test.stdout.splitlines()
    if test.returncode != 0 or not any('Epoch(test)' in line or 'Iter(test)' in line for line in lines):
        return False, _tail(test.stdout)
    keys = {'det': ['coco/bbox_mAP'], 'mask': ['coco/bbox_mAP', 'coco/segm_mAP'], 'seg': ['mIoU']}[kind]
    found = []
    for key in keys:
        values = re.findall(re.escape(key) + r':\s+(-?[0-9.]+)', test.stdout)
        if values:
            found.append(f'{key.split("/")[-1]} {values[-1]}')
    return True, ', '.join(found) if found else 'evaluated; no detections yet after 1 step'


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else '(no output)'


def format_table(checks: Sequence[Check]) -> str:
    width = max(len(c.name) for c in checks)
    rows = [f'| {"check":<{width}} | result | s | detail |', f'|{"-" * (width + 2)}|---|---:|---|']
    rows += [f'| {c.name:<{width}} | {"pass" if c.ok else "FAIL"} | {c.seconds:.0f} | {c.detail.replace("|", "/")} |'
             for c in checks]
    return '\n'.join(rows)


def _versions() -> Dict[str, Optional[str]]:
    import importlib.metadata as md
    found: Dict[str, Optional[str]] = {}
    for dist in ('torch', 'torchvision', 'mmengine', 'mmcv', 'mmdet', 'mmsegmentation', 'timm', 'numpy'):
        try:
            found[dist] = md.version(dist)
        except md.PackageNotFoundError:
            found[dist] = None
    return found


def _device() -> Dict[str, Any]:
    import torch
    info: Dict[str, Any] = dict(python=platform.python_version(), cuda=torch.version.cuda,
                                cudnn=torch.backends.cudnn.version() if torch.cuda.is_available() else None,
                                cpus=os.cpu_count())
    if gpu_available():
        info['gpu'] = torch.cuda.get_device_name(0)
        try:
            smi = subprocess.run(['nvidia-smi', '--query-gpu=driver_version,memory.total', '--format=csv,noheader'],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=30)
            info['driver'] = smi.stdout.strip().splitlines()[0] if smi.stdout.strip() else None
        except (OSError, subprocess.SubprocessError):
            info['driver'] = None
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            info['cpu_model'] = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')),
                                     None)
    except OSError:
        info['cpu_model'] = None
    return info


def run_gpu_check(configs_dir: str, tools_dir: str, work_dir: str, cpu: bool = False, out_dir: Optional[str] = None,
                  nproc: int = 1, models: Optional[Sequence[str]] = None, install: Optional[Dict[str, Any]] = None,
                  started: Optional[float] = None) -> int:
    """The whole check; prints the table, writes the outputs (see the module) and returns the exit code
    (0: all passed, or no GPU and not ``cpu``).

    ``models``: names of :data:`MODELS` (default all). ``install``: what installing the bundle took
    (``wheels_s``, ``mmcv_s``, ``mmcv``), recorded in the JSON. ``started``: ``time.time()`` at the start of
    the whole call (default: now), for the total time."""
    import torch
    started = time.time() if started is None else started
    if not gpu_available() and not cpu:
        print(f'no GPU visible (torch {torch.__version__}, CUDA {torch.version.cuda or "none"}): nothing was '
              'checked. Run `make gpu-check` on a machine with a GPU (or --cpu for the same steps on the CPU).')
        return 0
    unknown = [m for m in (models or []) if m not in MODELS]
    if unknown:
        raise ValueError(f'unknown model(s) {unknown}; choose from {list(MODELS)}')
    from ..data.synthetic import make_coco_detection, make_segmentation
    on_gpu = gpu_available() and not cpu
    out_dir = out_dir or work_dir
    log_dir = osp.join(work_dir, 'logs')
    os.makedirs(log_dir, exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)
    if on_gpu:
        print(f'GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__} (CUDA {torch.version.cuda})',
              flush=True)
        checks = check_ops()
    else:
        print('--cpu: the same steps on the CPU: --amp is bfloat16 autocast, torchrun uses gloo, sync_bn '
              'synchronizes over gloo; ops against torchvision', flush=True)
        checks = check_ops_cpu()
    data_root = osp.join(work_dir, 'data')
    make_coco_detection(osp.join(data_root, 'coco'), num_train=2, num_val=2, seed=0)
    make_segmentation(osp.join(data_root, 'seg'), num_train=2, num_val=2, seed=0)
    retinanet = osp.join(configs_dir, MODELS['RetinaNet'][0])
    configs: Dict[str, Any] = {}
    for name in models or list(MODELS):
        path, kind = MODELS[name]
        config = osp.join(configs_dir, path)
        if name in ('Faster R-CNN', 'Mask R-CNN'):
            config = synthetic_config(config, retinanet, osp.join(work_dir, f'{_slug(name)}_synthetic.py'),
                                      data_root, with_mask=kind == 'mask')
        configs[name] = (config, kind)
    env_cuda = {} if on_gpu else {'CUDA_VISIBLE_DEVICES': ''}
    saved_env = {k: os.environ.get(k) for k in env_cuda}
    os.environ.update(env_cuda)
    try:
        # on the CPU the two-stage detectors train in fp32: mmcv's CPU nms/roi_align have no bfloat16 kernels
        amp_models = None if on_gpu else [n for n, (_, kind) in configs.items() if kind == 'seg' or
                                          n == 'RetinaNet']
        checks += check_training(configs, tools_dir, work_dir, data_root, amp=True, nproc=nproc, log_dir=log_dir,
                                 amp_models=amp_models)
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    table = format_table(checks)
    failed = sum(not c.ok for c in checks)
    total_s = round(time.time() - started, 1)
    summary = dict(mode='gpu' if on_gpu else 'cpu', passed=len(checks) - failed, checks=len(checks),
                   total_s=total_s, install=install, nproc=nproc, device=_device(), versions=_versions(),
                   rows=[asdict(c) for c in checks])
    build = ''
    if install:
        build = (f'bundle install {install.get("wheels_s", 0):.0f} s, mmcv install/build '
                 f'{install.get("mmcv_s", 0):.0f} s; ')
    footer = f'{len(checks) - failed} of {len(checks)} checks passed; {build}total {total_s:.0f} s'
    print(table)
    print(footer, flush=True)
    with open(osp.join(out_dir, 'gpu_check.md'), 'w', encoding='utf-8') as f:
        dev = summary['device']
        f.write(f'gpu-check ({summary["mode"]}): {dev.get("gpu") or dev.get("cpu_model")}, python {dev["python"]}, '
                f'torch {summary["versions"]["torch"]} (CUDA {dev["cuda"]}), mmcv {summary["versions"]["mmcv"]}\n\n'
                f'{table}\n\n{footer}\n')
    with open(osp.join(out_dir, 'gpu_check.json'), 'w', encoding='utf-8') as f:
        json.dump(summary, f, indent=1)
    with tarfile.open(osp.join(out_dir, 'gpu_check_logs.tar.gz'), 'w:gz') as tar:
        tar.add(log_dir, arcname='logs')
    return 1 if failed else 0
