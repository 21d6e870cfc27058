#!/usr/bin/env python
"""Test (and evaluate) a detector (mmdet) or segmentor (mmseg) checkpoint.

The command ``rexnet-test`` of the installed package; this script runs the same ``main`` from a checkout
(:mod:`rexnet_cli.test`, where the options are described).
"""
import sys

from rexnet_cli.test import main

if __name__ == '__main__':
    sys.exit(main())
