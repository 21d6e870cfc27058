#!/usr/bin/env python
"""Convert an official clovaai/rexnet checkpoint (v1 or lite, any width) to a timm-format state_dict.

The command ``rexnet-convert-checkpoint`` of the installed package; this script runs the same ``main`` from a checkout
(:mod:`rexnet_cli.convert_checkpoint`, where the options are described).
"""
import sys

from rexnet_cli.convert_checkpoint import main

if __name__ == '__main__':
    sys.exit(main())
