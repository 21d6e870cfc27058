#!/usr/bin/env python
"""The main job (`make demo`): train RetinaNet-ReXNet-1.0x on the embedded synthetic COCO data on CPU.

The command ``rexnet-demo`` of the installed package; this script runs the same ``main`` from a checkout
(:mod:`rexnet_cli.demo`, where the options are described).
"""
import sys

from rexnet_cli.demo import main

if __name__ == '__main__':
    sys.exit(main())
