"""Check a GPU set-up: mmcv's CUDA ops, and a training step of RetinaNet and Faster R-CNN.

    python tools/gpu_check.py [--work-dir work_dirs/gpu_check] [--cpu]      (or: make gpu-check)

On a machine with a GPU: mmcv's ``nms``, ``roi_align`` and ``sigmoid_focal_loss`` on CUDA against
CPU results; one training step of RetinaNet and Faster R-CNN with ``--amp``, SyncBN and torchrun on
one GPU (``tools/dist_train.sh``, on the synthetic set), then ``tools/test.py`` on the result; prints
a pass/fail table and exits 1 if a check failed. On a CPU-only machine it says so and exits 0
without checking anything, unless ``--cpu`` asks for a dry run of the training and test steps on CPU
(without ``--amp``; nothing about CUDA is checked). The checks are :mod:`rexnet_backbones.engine.gpu_check`.

It runs the checkout's ``tools/dist_train.sh`` and ``tools/test.py``, so it is a checkout's tool
(``python tools/gpu_check.py``), not a command of the installed package.
"""
import argparse
import os.path as osp
import sys

#: the checkout (this package's parent folder)
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/gpu_check', help='where data, logs and checkpoints go')
    parser.add_argument('--cpu', action='store_true',
                        help='without a GPU: run the training and test steps on CPU, without --amp (a dry run)')
    args = parser.parse_args(argv)
    if not osp.isfile(osp.join(ROOT, 'tools', 'dist_train.sh')):
        print(f'error: the GPU check runs a checkout\'s tools/dist_train.sh, and {ROOT} is not a checkout: run '
              'python tools/gpu_check.py in a rexnet-backbones checkout', file=sys.stderr)
        return 2
    from rexnet_backbones.engine.gpu_check import run_gpu_check
    from rexnet_backbones.quiet import quiet_known_warnings
    quiet_known_warnings()
    return run_gpu_check(osp.join(ROOT, 'configs'), osp.join(ROOT, 'tools'), args.work_dir, cpu=args.cpu)


if __name__ == '__main__':
    sys.exit(main())
