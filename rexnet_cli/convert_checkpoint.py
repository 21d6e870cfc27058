"""Convert an official clovaai/rexnet checkpoint (v1 or lite, any width) to a timm-format state_dict.

``rexnet-convert-checkpoint`` (``python tools/convert_checkpoint.py`` in a checkout runs the same ``main``).

    rexnet-convert-checkpoint rexnet_lite_1.0.pth checkpoints/rexnet_lite_1.0.pth
    rexnet-convert-checkpoint rexnetv1_1.0.pth rexnet_100.safetensors --arch rexnet_100
    rexnet-convert-checkpoint rexnet_lite_1.0.pth checkpoints/      # -> checkpoints/rexnet_lite_1.0.pth

The architecture is detected from the tensors unless ``--arch`` is given; the input may be a raw
state_dict or one wrapped under ``state_dict``/``model``, with or without ``module.``. The output is
written atomically, ``.safetensors`` by extension. The job is
:func:`rexnet_backbones.weights.convert_checkpoint_file`. A known error (missing or unreadable SRC, a
checkpoint of another model) prints one ``error: ...`` line and exits 2 (``--debug``: with the traceback).
"""
from __future__ import annotations

import argparse
import sys

from ._args import add_debug_arg


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('src', help='official (or timm-format) checkpoint (.pth)')
    p.add_argument('dst', help='output file (.pth or .safetensors) or an existing directory')
    p.add_argument('--arch', help='timm name to convert for, e.g. rexnet_lite_100 (default: detect)')
    p.add_argument('--trust-checkpoint', action='store_true',
                   help='allow full unpickling of SRC (executes pickled code: trusted files only)')
    p.add_argument('--no-verify', action='store_true', help='skip loading the result into the timm model')
    add_debug_arg(p)
    return p.parse_args(argv)


def convert(args) -> int:
    from rexnet_backbones.weights import convert_checkpoint_file
    info = convert_checkpoint_file(args.src, args.dst, arch=args.arch,
                                   trusted=True if args.trust_checkpoint else None, verify=not args.no_verify)
    print(f'{args.src} ({info["layout"]}) -> {info["dst"]}: {info["arch"]}, {info["tensors"]} tensors, '
          f'{info["parameters"]:,} parameters')
    print(f"use: timm.create_model('{info['arch']}', pretrained=True, pretrained_cfg_overlay=dict(file='{info['dst']}'))")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    from rexnet_backbones.cli import run_cli
    return run_cli(lambda _: convert(args), debug=args.debug)


if __name__ == '__main__':
    sys.exit(main())
