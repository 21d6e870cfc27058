#!/usr/bin/env python
"""Export a ReXNet model to ONNX (and verify it against PyTorch).

The command ``rexnet-export`` of the installed package; this script runs the same ``main`` from a checkout
(:mod:`rexnet_cli.export`, where the options are described).
"""
import sys

from rexnet_cli.export import main

if __name__ == '__main__':
    sys.exit(main())
