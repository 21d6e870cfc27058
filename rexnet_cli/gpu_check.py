"""Check a GPU set-up: mmcv's CUDA ops, and --amp + sync_bn + torchrun training steps of RetinaNet, Faster R-CNN,
Mask R-CNN and Semantic FPN, then tools/test.py on each.

    python tools/gpu_check.py [--bundle DIR] [--work-dir DIR] [--out-dir DIR] [--nproc N] [--models NAME ...] [--cpu]
    (or: make gpu-check)

--bundle DIR first installs what `make gpu-bundle` made, offline (pip --no-index --no-deps), and builds mmcv
from its sdist with CUDA ops on all cores (tools/install_mmcv.sh): for a bare GPU machine with a CUDA PyTorch and
no OpenMMLab packages. Then, on a machine with a GPU: mmcv's nms, roi_align and sigmoid_focal_loss on CUDA against
CPU results; one training step of each model on tiny synthetic sets made here, with --amp (mmengine's
AmpOptimWrapper, float16), sync_bn='torch' and torchrun with --nproc processes (tools/dist_train.sh); then
tools/test.py on each checkpoint. Prints a pass/fail table with each step's seconds, the bundle install and mmcv
build time and the total; writes gpu_check.md, gpu_check.json and gpu_check_logs.tar.gz (every step's output) to
--out-dir; exits 1 if a check failed. --cpu runs the same steps on the CPU (--amp is bfloat16 autocast,
torchrun's backend gloo, sync_bn over gloo, ops against torchvision). On a CPU-only machine without --cpu it says
so and exits 0 without checking anything. The checks are rexnet_backbones.engine.gpu_check.

It runs the checkout's ``tools/dist_train.sh`` and ``tools/test.py``, so it is a checkout's tool
(``python tools/gpu_check.py``), not a command of the installed package.
"""
import argparse
import os.path as osp
import sys
import time

#: the checkout (this package's parent folder)
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MODEL_NAMES = ('RetinaNet', 'Faster R-CNN', 'Mask R-CNN', 'Semantic FPN')


def main(argv=None) -> int:
    started = time.time()
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--bundle', default=None, metavar='DIR',
                        help='install this bundle (make gpu-bundle) first, offline, and build mmcv with CUDA ops')
    parser.add_argument('--work-dir', default='work_dirs/gpu_check', help='where data, logs and checkpoints go')
    parser.add_argument('--out-dir', default=None,
                        help='where gpu_check.md, gpu_check.json and gpu_check_logs.tar.gz go (default: --work-dir)')
    parser.add_argument('--nproc', type=int, default=1, help='torchrun processes per training (default 1)')
    parser.add_argument('--models', nargs='+', default=None, choices=MODEL_NAMES, metavar='NAME',
                        help=f'train only these (default: all of {", ".join(MODEL_NAMES)})')
    parser.add_argument('--cpu', action='store_true',
                        help='run the same steps on the CPU: --amp as bfloat16 autocast, gloo, ops against torchvision')
    parser.add_argument('--debug', action='store_true', help='show the traceback of an error')
    args = parser.parse_args(argv)

    if not osp.isfile(osp.join(ROOT, 'tools', 'dist_train.sh')):
        print(f"error: the GPU check runs a checkout's tools/dist_train.sh, and {ROOT} is not a checkout: run "
              'python tools/gpu_check.py in a rexnet-backbones checkout', file=sys.stderr)
        return 2
    from rexnet_backbones.cli import run_cli
    from rexnet_backbones.errors import BundleError, ToolError

    def job(_) -> int:
        from rexnet_backbones.gpu_bundle import install_bundle
        install = None
        if args.bundle:
            import os
            os.makedirs(osp.join(args.work_dir, 'logs'), exist_ok=True)
            log = osp.join(args.work_dir, 'logs', 'install.log')  # in gpu_check_logs.tar.gz
            print(f'installing {args.bundle} (log: {log}) ...', flush=True)
            try:
                wheels_s, mmcv_s, said = install_bundle(args.bundle, log, osp.join(ROOT, 'tools', 'install_mmcv.sh'))
            except BundleError as e:
                raise ToolError(str(e)) from None
            install = dict(wheels_s=round(wheels_s, 1), mmcv_s=round(mmcv_s, 1), mmcv=said)
            print(f'bundle installed in {wheels_s:.0f} s; mmcv in {mmcv_s:.0f} s: {said}', flush=True)
        if args.nproc < 1:
            raise ToolError('--nproc must be >= 1')
        from rexnet_backbones.engine.gpu_check import run_gpu_check
        from rexnet_backbones.quiet import quiet_known_warnings
        quiet_known_warnings()
        return run_gpu_check(osp.join(ROOT, 'configs'), osp.join(ROOT, 'tools'), args.work_dir, cpu=args.cpu,
                             out_dir=args.out_dir, nproc=args.nproc, models=args.models, install=install,
                             started=started)

    return run_cli(job, debug=args.debug)


if __name__ == '__main__':
    sys.exit(main())
