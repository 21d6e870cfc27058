#!/usr/bin/env python
"""Export a ReXNet model to ONNX (and verify it against PyTorch).

    python tools/export.py SOURCE OUT.onnx [--checkpoint FILE] [--features-only]
                           [--input-size H W] [--batch-size N] [--fuse-bn] [--verify]
                           [--backend {onnxruntime,openvino}] [--atol A] [--opset N] [--dynamo]

SOURCE is a timm model name (``rexnet_100``, ``rexnet_lite_100``, ...; ``--features-only`` exports
the feature pyramid instead of the classifier) or an mmdet/mmseg config, exported in
``mode='tensor'`` (backbone + neck + head raw outputs; post-processing stays in Python, see
``tools/test.py --backend onnxruntime``). The batch axis is dynamic, and so are H and W where the
model allows it. ``--verify`` runs ``onnx.checker`` and compares every output of ONNX Runtime (or
OpenVINO) with PyTorch eager on two inputs (the export shape and another batch / spatial size),
failing when one differs by more than ``--atol`` (1e-4). Needs ``pip install -e '.[deploy]'``.
"""
import argparse
import sys

from rexnet_backbones.quiet import quiet_known_warnings


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Export a ReXNet model (timm name or mmdet/mmseg config) to ONNX')
    parser.add_argument('source', help='timm model name (e.g. rexnet_100) or mmdet/mmseg config file')
    parser.add_argument('out', help='output .onnx file')
    parser.add_argument('--checkpoint', help='weights: timm-format/official file (timm names) or mmengine checkpoint')
    parser.add_argument('--features-only', action='store_true', help='timm names: export the feature pyramid')
    parser.add_argument('--input-size', nargs=2, type=int, metavar=('H', 'W'),
                        help="example input size (default: the model's / the config's test scale)")
    parser.add_argument('--batch-size', type=int, default=1, help='example batch size (the axis stays dynamic)')
    parser.add_argument('--fuse-bn', action='store_true', help='fold BatchNorm into the convolutions first')
    parser.add_argument('--verify', action='store_true', help='check the file and compare it with PyTorch')
    parser.add_argument('--backend', choices=('onnxruntime', 'openvino'), default='onnxruntime',
                        help='runtime used by --verify')
    parser.add_argument('--atol', type=float, default=1e-4, help='--verify tolerance (max abs difference)')
    parser.add_argument('--opset', type=int, default=18, help='ONNX opset (>= 17)')
    parser.add_argument('--dynamo', action='store_true', help="torch's torch.export-based exporter (slower)")
    return parser.parse_args(argv)


def fail(message: str, code: int = 1):
    print(f'error: {message}', file=sys.stderr, flush=True)
    raise SystemExit(code)


def main(argv=None):
    args = parse_args(argv)
    quiet_known_warnings()
    from rexnet_backbones.deploy import (DeployDependencyError, OnnxVerificationError, build_source_model,
                                         export_onnx)
    from rexnet_backbones.deploy.onnx import require
    try:
        require('onnx')
        if args.verify:
            require(args.backend)
        model, size = build_source_model(args.source, args.checkpoint, args.features_only, args.fuse_bn)
        size = tuple(args.input_size) if args.input_size else size
        result = export_onnx(model, args.out, (args.batch_size, 3, *size), opset=args.opset, dynamo=args.dynamo,
                             verify=args.verify, atol=args.atol, backend=args.backend)
    except (DeployDependencyError, FileNotFoundError, ValueError, OnnxVerificationError) as e:
        fail(str(e))
    axes = ['batch'] * result.dynamic_batch + ['height', 'width'] * result.dynamic_spatial
    print(f'wrote {result.path}: input {result.input_shape} (dynamic: {", ".join(axes) or "none"}), '
          f'{len(result.output_names)} outputs, opset {result.opset}')
    for shape, diff in result.max_abs_diff.items():
        print(f'verified with {args.backend}: input {shape}: max |onnx - torch| = {diff:.3g} (atol {args.atol:g})')
    return result


if __name__ == '__main__':
    main()
