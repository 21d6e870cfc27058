"""Make the bundle that `make gpu-check` installs, offline, on a bare GPU machine (a CUDA PyTorch, no OpenMMLab).

    python tools/make_gpu_bundle.py [--out gpu_bundle] [--python 3.11 3.12]      (or: make gpu-bundle)

It reads the checkout's requirements/constraints.txt, so it is a checkout's tool, not a command of the
installed package.

Downloads with pip (PyPI must be reachable here, nothing is downloaded there), at the versions of
requirements/constraints.txt: wheels of mmengine, mmdet, mmsegmentation, timm and their pure-python needs that a
CUDA PyTorch image lacks, binary wheels of pycocotools and shapely for each --python, and mmcv's sdist (built
there with CUDA ops by tools/install_mmcv.sh). Writes requirements.txt and MANIFEST.txt into --out and prints the
manifest; at most 64 MiB (what the device tool carries). See rexnet_backbones.gpu_bundle.
"""
import argparse
import os.path as osp
import sys

#: the checkout (this package's parent folder)
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default='gpu_bundle', help='the bundle directory (default: gpu_bundle, git-ignored)')
    parser.add_argument('--python', nargs='+', default=['3.11', '3.12'], metavar='X.Y',
                        help="CPython versions of the GPU machine's binary wheels (default: 3.11 3.12)")
    parser.add_argument('--debug', action='store_true', help='show the traceback of an error')
    args = parser.parse_args(argv)
    from rexnet_backbones.cli import run_cli
    from rexnet_backbones.errors import BundleError
    from rexnet_backbones.gpu_bundle import make_bundle
    return run_cli(lambda _: sys.stdout.write(make_bundle(args.out, osp.join(ROOT, 'requirements', 'constraints.txt'), args.python)) and 0, debug=args.debug,
                   errors=(BundleError,))


if __name__ == '__main__':
    sys.exit(main())
