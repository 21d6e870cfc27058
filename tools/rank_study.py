#!/usr/bin/env python
"""The ReXNet paper's rank studies: random single layers, and design spaces (ReXNet vs RegNet).

The command ``rexnet-rank-study`` of the installed package; this script runs the same ``main`` from a checkout
(:mod:`rexnet_cli.rank_study`, where the options are described).
"""
import sys

from rexnet_cli.rank_study import main

if __name__ == '__main__':
    sys.exit(main())
