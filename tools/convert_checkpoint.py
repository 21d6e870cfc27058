#!/usr/bin/env python
"""Convert an official clovaai/rexnet checkpoint (v1 or lite, any width) to a timm-format state_dict.

    python tools/convert_checkpoint.py rexnet_lite_1.0.pth checkpoints/rexnet_lite_100.pth
    python tools/convert_checkpoint.py rexnetv1_1.0.pth rexnet_100.safetensors --arch rexnet_100

The architecture is detected from the tensors unless ``--arch`` is given. The input may be a raw
state_dict or one wrapped under ``state_dict``/``model``, with or without a ``module.`` prefix.
The output is written atomically; ``.safetensors`` output is chosen by the file extension.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import torch


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('src', help='official checkpoint (.pth)')
    p.add_argument('dst', help='output file (.pth or .safetensors)')
    p.add_argument('--arch', help='timm name to convert for, e.g. rexnet_lite_100 (default: detect)')
    p.add_argument('--trust-checkpoint', action='store_true',
                   help='allow full unpickling of SRC (executes pickled code: trusted files only)')
    p.add_argument('--no-verify', action='store_true', help='skip loading the result into the timm model')
    return p.parse_args(argv)


def save_atomic(state_dict, dst: str) -> None:
    """Write to a temporary file next to ``dst`` and rename it into place."""
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix=os.path.basename(dst), dir=os.path.dirname(os.path.abspath(dst)))
    os.close(fd)
    try:
        if dst.endswith('.safetensors'):
            from safetensors.torch import save_file
            save_file({k: v.contiguous() for k, v in state_dict.items()}, tmp)
        else:
            torch.save(state_dict, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv=None) -> int:
    args = parse_args(argv)
    import timm
    from rexnet_backbones import convert as C
    from rexnet_backbones.checkpoint import safe_load

    try:
        raw = safe_load(args.src, trusted=True if args.trust_checkpoint else None)
        sd = C.unwrap_state_dict(raw)
        arch = args.arch or C.detect_arch(sd)
        if arch not in timm.list_models('rexnet*'):
            raise C.CheckpointMismatchError(f'unknown arch {arch!r}; choose one of {timm.list_models("rexnet*")}')
        num_classes = C._num_classes(sd)
        model = timm.create_model(arch, num_classes=num_classes)
        out = C.to_timm_state_dict(sd, model)
        if not args.no_verify:
            model.load_state_dict(out, strict=True)
    except (C.CheckpointMismatchError, RuntimeError, FileNotFoundError) as e:
        print(f'error: cannot convert {args.src}:\n{e}', file=sys.stderr)
        return 2
    save_atomic(out, args.dst)
    n = sum(v.numel() for k, v in out.items() if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked')))
    layout = 'official' if C.is_official_layout(sd) else 'timm-format'
    print(f'{args.src} ({layout}) -> {args.dst}: {arch}, {len(out)} tensors, {n:,} parameters')
    print(f"use: timm.create_model('{arch}', pretrained=True, pretrained_cfg_overlay=dict(file='{args.dst}'))")
    return 0


if __name__ == '__main__':
    sys.exit(main())
