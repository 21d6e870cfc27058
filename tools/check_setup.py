#!/usr/bin/env python
"""The set-up check (the last step of ``make setup``): versions of the stack, and whether mmcv fits.

The command ``rexnet-check-setup`` of the installed package; this script runs the same ``main`` from a checkout
(:mod:`rexnet_cli.check_setup`, where the options are described).
"""
import sys

from rexnet_cli.check_setup import main

if __name__ == '__main__':
    sys.exit(main())
