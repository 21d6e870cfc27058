#!/usr/bin/env python
"""Generate the small synthetic detection/segmentation sets used by the smoke tests and demos.

The command ``rexnet-make-synthetic-data`` of the installed package; this script runs the same ``main`` from a checkout
(:mod:`rexnet_cli.make_synthetic_data`, where the options are described).
"""
import sys

from rexnet_cli.make_synthetic_data import main

if __name__ == '__main__':
    sys.exit(main())
