#!/usr/bin/env python
"""Train a detector (mmdet) or segmentor (mmseg) from a config.

The command ``rexnet-train`` of the installed package; this script runs the same ``main`` from a checkout
(:mod:`rexnet_cli.train`, where the options are described).
"""
import sys

from rexnet_cli.train import main

if __name__ == '__main__':
    sys.exit(main())
