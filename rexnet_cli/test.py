"""Test (and evaluate) a detector (mmdet) or segmentor (mmseg) checkpoint.

``rexnet-test`` (``python tools/test.py`` in a checkout runs the same ``main``).

    rexnet-test CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.pkl] [--show]
                         [--show-dir DIR] [--wait-time S] [--tta] [--cfg-options KEY=VALUE ...]
                         [--launcher {none,pytorch,slurm,mpi}] [--trust-checkpoint]
                         [--allow-partial] [--backend {pytorch,onnxruntime,openvino}]
                         [--threads N] [--debug]

The flags of mmdet 3.3.0's ``tools/test.py``, for mmdet and mmseg configs alike; the job is
:func:`rexnet_backbones.engine.test`. Metrics (``coco/bbox_mAP``, ``mIoU``, ...) are logged and
written to ``<work-dir>/<timestamp>/<timestamp>.json``.

* ``--out FILE.pkl`` dumps the predictions; for mmseg configs another value is the directory where
  ``IoUMetric`` writes the predicted label maps (mmseg's meaning).
* ``--show-dir DIR`` saves painted predictions (mmdet: under ``<work-dir>/<timestamp>/``).
* CHECKPOINT must fit the model; ``--allow-partial`` loads what fits and logs the rest.
* ``--backend onnxruntime`` (or ``openvino``) runs an exported ``.onnx`` network (tools/export.py)
  in ONNX Runtime (OpenVINO, f32) with the config's own post-processing and the same metric; the
  file is checked against the config's model first.
* ``--threads N``: CPU threads of torch and of the ONNX runtime (default: what the machine has).
* ``--trust-checkpoint`` loads CHECKPOINT with full unpickling, which EXECUTES CODE in the file.

A known error stops it before the config dump with one ``error: ...`` line and exit code 2
(``--debug``: with the traceback).
"""
from __future__ import annotations

import argparse
import sys

from ._args import ONNX_BACKENDS, parse_runner_args


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a detector (mmdet) or segmentor (mmseg)')
    parser.add_argument('config', help='config: a file, one of ours by short name '
                        '(rexnet_backbones::det/retinanet_rexnet.py), or mmdet::/mmseg::path')
    parser.add_argument('checkpoint', help='checkpoint file (.pth, or .onnx with --backend onnxruntime/openvino)')
    parser.add_argument('--work-dir', help='the directory to save the file containing evaluation metrics')
    parser.add_argument('--out', type=str, help='dump predictions to a pickle file (.pkl/.pickle)')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir', help='directory where painted images will be saved')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation')
    parser.add_argument('--backend', choices=('pytorch',) + ONNX_BACKENDS, default='pytorch',
                        help='run the network in PyTorch (a .pth checkpoint), or in ONNX Runtime / OpenVINO '
                        '(a .onnx file from rexnet-export)')
    return parse_runner_args(parser, argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from rexnet_backbones.cli import run_cli
    from rexnet_backbones.engine import test

    def job(_):
        test(
            args.config, args.checkpoint, work_dir=args.work_dir, out=args.out, show=args.show,
            show_dir=args.show_dir, wait_time=args.wait_time, tta=args.tta, cfg_options=args.cfg_options,
            launcher=args.launcher, trust_checkpoint=args.trust_checkpoint,
            allow_partial=args.allow_partial, backend=args.backend, threads=args.threads)

    return run_cli(job, debug=args.debug)


if __name__ == '__main__':
    sys.exit(main())
