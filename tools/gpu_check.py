#!/usr/bin/env python
"""Check a GPU set-up: mmcv's CUDA ops, and a training step of RetinaNet and Faster R-CNN.

A checkout's tool (it runs tools/dist_train.sh); the options are described in :mod:`rexnet_cli.gpu_check`.
"""
import sys

from rexnet_cli.gpu_check import main

if __name__ == '__main__':
    sys.exit(main())
