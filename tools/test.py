#!/usr/bin/env python
"""Test (and evaluate) a detector (mmdet) or segmentor (mmseg) checkpoint.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.pkl] [--show]
                         [--show-dir DIR] [--wait-time S] [--tta] [--cfg-options KEY=VALUE ...]
                         [--launcher {none,pytorch,slurm,mpi}] [--trust-checkpoint]

Same options and semantics as mmdet 3.3.0's ``tools/test.py``, for mmdet and mmseg configs alike
(the package is taken from the config's ``default_scope``). The metrics (e.g. ``coco/bbox_mAP``,
``mIoU``) are logged and written to ``<work-dir>/<timestamp>/<timestamp>.json``.

* ``--out FILE.pkl``: also dump the predictions to a pickle for offline evaluation (mmdet:
  ``DumpDetResults``, masks RLE-encoded; others: mmengine's ``DumpResults`` without the bulky
  ``seg_logits``). For mmseg configs a value that is not ``*.pkl``/``*.pickle`` keeps mmseg's own
  meaning: a directory where ``IoUMetric`` writes the predicted label PNGs.
* ``--show-dir DIR``: turn the visualization hook on and save painted predictions of every test
  image. mmdet (``DetVisualizationHook.test_out_dir``): ``<work-dir>/<timestamp>/DIR`` for a
  relative DIR, DIR itself for an absolute one. mmseg (``SegVisualizationHook`` has no
  ``test_out_dir``; as in mmseg's test.py the visualizer's ``save_dir`` is set, and the hook
  ``interval`` is set to 1 so every image is painted): ``DIR/vis_data/vis_image/``.
* ``--trust-checkpoint``: load CHECKPOINT with full unpickling; this EXECUTES CODE pickled into
  the file, use it only for checkpoints you trust. Without it the checkpoint is loaded with torch's
  ``weights_only=True`` plus the allowlist registered by ``import rexnet_backbones``.

The test dataset paths are checked before anything is built (see tools/train.py), and CPU-only
distributed runs (tools/dist_test.sh) use gloo as described in tools/train.py.
"""
import argparse
import importlib.util
import inspect
import logging
import os.path as osp
import sys
import warnings
from copy import deepcopy


def _load_train_tool():
    """tools/train.py holds the helpers both tools share (it also imports rexnet_backbones)."""
    name = '_rexnet_tools_train'
    if name in sys.modules:
        return sys.modules[name]
    path = osp.join(osp.dirname(osp.abspath(__file__)), 'train.py')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_train = _load_train_tool()

from mmengine.config import ConfigDict  # noqa: E402
from mmengine.evaluator import DumpResults  # noqa: E402
from mmengine.logging import print_log  # noqa: E402


class DumpPredictions(DumpResults):
    """mmengine's DumpResults, dropping per-pixel ``seg_logits`` (C x H x W floats per image)."""

    def process(self, data_batch, data_samples) -> None:
        from mmengine.evaluator.metric import _to_cpu
        for sample in _to_cpu(data_samples):
            if isinstance(sample, dict):
                sample.pop('seg_logits', None)
            self.results.append(sample)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a detector (mmdet) or segmentor (mmseg) checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='dump predictions to a pickle file (.pkl/.pickle) for offline evaluation')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved (mmdet: relative to '
        '<work_dir>/<timestamp>/)')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation')
    _train.add_common_args(parser)
    args = parser.parse_args(argv)
    _train.export_local_rank(args)
    return args


def _hook_accepts(hook_type, scope, argument: str):
    """Whether the visualization hook's __init__ takes ``argument`` (None if unknown)."""
    try:
        from mmengine.registry import HOOKS, DefaultScope
        if isinstance(hook_type, str):
            with DefaultScope.overwrite_default_scope(scope):
                hook_type = HOOKS.get(hook_type)
        if hook_type is None:
            return None
        return argument in inspect.signature(hook_type.__init__).parameters
    except Exception:  # pragma: no cover - registry not populated
        return None


def trigger_visualization_hook(cfg, args, scope: str):
    """Enable ``default_hooks.visualization`` for --show / --show-dir."""
    hooks = cfg.get('default_hooks', None) or {}
    if 'visualization' not in hooks:
        _train.fail('--show/--show-dir need a visualization hook in default_hooks, e.g. '
                    "default_hooks.visualization=dict(type='DetVisualizationHook') (mmdet) or "
                    "dict(type='SegVisualizationHook') (mmseg)")
    hook = hooks['visualization']
    hook['draw'] = True
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        accepts = _hook_accepts(hook.get('type'), scope, 'test_out_dir')
        if accepts is None:
            accepts = scope != 'mmseg'
        if accepts:  # mmdet's DetVisualizationHook
            hook['test_out_dir'] = args.show_dir
        else:  # mmseg's SegVisualizationHook: images go to the visualizer's save_dir
            if cfg.get('visualizer', None) is None:
                _train.fail('--show-dir: the config has no visualizer')
            cfg.visualizer['save_dir'] = args.show_dir
            hook['interval'] = 1
    return cfg


def apply_tta(cfg, scope: str):
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        if scope != 'mmdet':
            _train.fail('--tta needs tta_model and tta_pipeline in the config')
    if 'tta_model' not in cfg:  # mmdet's defaults
        warnings.warn('Cannot find ``tta_model`` in config, we will set it as default.')
        cfg.tta_model = dict(
            type='DetTTAModel',
            tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
    if 'tta_pipeline' not in cfg:
        warnings.warn('Cannot find ``tta_pipeline`` in config, we will set it as default.')
        test_data_cfg = cfg.test_dataloader.dataset
        while 'dataset' in test_data_cfg:
            test_data_cfg = test_data_cfg['dataset']
        cfg.tta_pipeline = deepcopy(test_data_cfg.pipeline)
        cfg.tta_pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[[dict(type='RandomFlip', prob=1.),
                         dict(type='RandomFlip', prob=0.)],
                        [dict(type='PackDetInputs',
                              meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                         'scale_factor', 'flip', 'flip_direction'))]])
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    test_data_cfg = cfg.test_dataloader.dataset
    while 'dataset' in test_data_cfg:
        test_data_cfg = test_data_cfg['dataset']
    test_data_cfg.pipeline = cfg.tta_pipeline


def build_test_cfg(args):
    """The config as the Runner will see it (no process group, no modules registered)."""
    cfg = _train.load_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    cfg.load_from = args.checkpoint
    scope = cfg.get('default_scope', None) or ''
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        if scope != 'mmseg':
            _train.fail(f'--out must name a .pkl/.pickle file, got {args.out!r}')
        # mmseg's meaning: IoUMetric writes the predicted label maps to this directory
        if isinstance(cfg.test_evaluator, dict):
            cfg.test_evaluator['output_dir'] = args.out
            cfg.test_evaluator['keep_results'] = True
        else:
            _train.fail('--out DIR needs a single test_evaluator; use --out FILE.pkl')
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_test_cfg(args)
    if args.trust_checkpoint:
        _train.enable_trusted_checkpoints()
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        _train.fail(f'checkpoint not found: {args.checkpoint}')
    _train.check_datasets(cfg, ['test'])
    scope = _train.register_scope_modules(cfg)
    if args.show or args.show_dir:
        trigger_visualization_hook(cfg, args, scope)
    if args.tta:
        apply_tta(cfg, scope)
    _train.setup_cpu_distributed(cfg)

    runner = _train.build_runner(cfg)
    if args.out is not None and args.out.endswith(('.pkl', '.pickle')):
        if scope == 'mmdet':
            from mmdet.evaluation import DumpDetResults
            runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
        else:
            runner.test_evaluator.metrics.append(DumpPredictions(out_file_path=args.out))
    metrics = runner.test()
    if args.out is not None and runner.rank == 0:
        print_log(f'predictions written to {args.out}', logger='current', level=logging.INFO)
    return metrics


if __name__ == '__main__':
    main()
