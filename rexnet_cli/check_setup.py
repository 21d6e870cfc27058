"""The set-up check (the last step of ``make setup``): versions of the stack, and whether mmcv fits.

``rexnet-check-setup`` (``python tools/check_setup.py`` in a checkout runs the same ``main``).

    rexnet-check-setup

Exits 1 with one ``error:`` line when mmcv is missing, outside mmdet's range (>=2.0.0,<2.2.0), has ops
that do not import, or has no CUDA kernels while torch has CUDA and a GPU is visible; the line gives
the command that fixes it. Otherwise it imports mmcv.ops, mmdet.models and mmseg.models and prints
``set-up ok``. The check is :func:`rexnet_backbones.engine.env.main`.
"""
import argparse
import sys


def main(argv=None) -> int:
    argparse.ArgumentParser(description=__doc__.split('\n\n')[0]).parse_args(argv)
    from rexnet_backbones.engine.env import main as check_setup
    return check_setup()


if __name__ == '__main__':
    sys.exit(main())
