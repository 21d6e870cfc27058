#!/usr/bin/env python
"""Rank along a network: every block's output (and expand layers), per model.

The command ``rexnet-rank-analysis`` of the installed package; this script runs the same ``main`` from a checkout
(:mod:`rexnet_cli.rank_analysis`, where the options are described).
"""
import sys

from rexnet_cli.rank_analysis import main

if __name__ == '__main__':
    sys.exit(main())
