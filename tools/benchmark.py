#!/usr/bin/env python
"""Benchmark models from configs or timm names: size, FLOPs, speed per backend, accuracy.

The command ``rexnet-benchmark`` of the installed package; this script runs the same ``main`` from a checkout
(:mod:`rexnet_cli.benchmark`, where the options are described).
"""
import sys

from rexnet_cli.benchmark import main

if __name__ == '__main__':
    sys.exit(main())
