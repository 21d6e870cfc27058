#!/usr/bin/env python
"""Run a benchmark suite (many backbones x seeds on one recipe) and report it.

The command ``rexnet-suite`` of the installed package; this script runs the same ``main`` from a checkout
(:mod:`rexnet_cli.suite`, where the options are described).
"""
import sys

from rexnet_cli.suite import main

if __name__ == '__main__':
    sys.exit(main())
