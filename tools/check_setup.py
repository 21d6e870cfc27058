#!/usr/bin/env python
"""The set-up check (the last step of ``make setup``): versions of the stack, and whether mmcv fits.

    python tools/check_setup.py

Exits 1 with one ``error:`` line when mmcv is missing, outside mmdet's range (>=2.0.0,<2.2.0), has ops
that do not import, or has no CUDA kernels while torch has CUDA and a GPU is visible; the line gives
the command that fixes it. Otherwise it imports mmcv.ops, mmdet.models and mmseg.models and prints
``set-up ok``. The check is :func:`rexnet_backbones.engine.env.main`.
"""
import sys

from rexnet_backbones.engine.env import main

if __name__ == '__main__':
    sys.exit(main())
