#!/usr/bin/env python
"""Make the bundle that `make gpu-check` installs, offline, on a bare GPU machine (``make gpu-bundle``).

A checkout's tool: :mod:`rexnet_cli.make_gpu_bundle` describes the options.
"""
import sys

from rexnet_cli.make_gpu_bundle import main

if __name__ == '__main__':
    sys.exit(main())
