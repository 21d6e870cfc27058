#!/usr/bin/env python
"""Export a ReXNet model to ONNX (and verify it against PyTorch).

    python tools/export.py SOURCE OUT.onnx [--checkpoint FILE] [--features-only]
                           [--input-size H W] [--batch-size N] [--fuse-bn] [--deploy] [--verify]
                           [--backend {onnxruntime,openvino}] [--atol A] [--opset N] [--dynamo]
                           [--threads N] [--debug]

SOURCE is a timm model name (``rexnet_100``, ``rexnet_lite_100``, ...; ``--features-only`` exports
the feature pyramid instead of the classifier) or an mmdet/mmseg config, exported in
``mode='tensor'`` (backbone + neck + head raw outputs; post-processing stays in Python, see
``tools/test.py --backend onnxruntime``). The batch axis is dynamic, and so are H and W where the
model allows it. ``--verify`` runs ``onnx.checker`` and compares every output of ONNX Runtime (or
OpenVINO) with PyTorch eager on two inputs (the export shape and another batch / spatial size),
failing when one differs by more than ``--atol`` (1e-4). ``--deploy`` exports the deploy form the
benchmark measures (``rexnet_backbones.deploy.deploy_model``: BN folded, ReXNet widths padded to
multiples of 8, residual without ``cat``); ``--verify`` then compares it with the model as built.
Needs ``pip install -e '.[deploy]'``.

Exportable: timm model names, single-stage detectors (RetinaNet, SSD/SSDLite, FCOS, ...) and mmseg
``EncoderDecoder`` segmentors; a two-stage detector (Faster/Mask R-CNN) stops with an error that
says so. A known error prints one ``error: ...`` line and exits 2 (``--debug``: with the traceback).
"""
import argparse
import sys

from rexnet_backbones.cli import add_debug_arg, add_threads_arg, run_cli, set_threads


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
    parser.add_argument('--deploy', action='store_true',
                        help='export the deploy form the benchmark measures (BN folded, padded widths, no cat)')
    parser.add_argument('--verify', action='store_true', help='check the file and compare it with PyTorch')
    parser.add_argument('--backend', choices=('onnxruntime', 'openvino'), default='onnxruntime',
                        help='runtime used by --verify')
    parser.add_argument('--atol', type=float, default=1e-4, help='--verify tolerance (max abs difference)')
    parser.add_argument('--opset', type=int, default=18, help='ONNX opset (>= 17)')
    parser.add_argument('--dynamo', action='store_true', help="torch's torch.export-based exporter (slower)")
    add_threads_arg(parser, help='CPU threads of torch and of the --verify runtime (default: what the machine has)')
    add_debug_arg(parser)
    return parser.parse_args(argv)


def export(args):
    from rexnet_backbones.deploy import build_source_model, deploy_model, export_onnx
    from rexnet_backbones.deploy.onnx import require
    set_threads(args.threads)
    require('onnx')
    if args.verify:
        require(args.backend)
    model, size = build_source_model(args.source, args.checkpoint, args.features_only, args.fuse_bn)
    size = tuple(args.input_size) if args.input_size else size
    reference = model
    if args.deploy:  # as the benchmark's '+deploy' ONNX Runtime / OpenVINO paths
        model = deploy_model(model, residual='pad', channel_multiple=8)
    result = export_onnx(model, args.out, (args.batch_size, 3, *size), opset=args.opset, dynamo=args.dynamo,
                         verify=args.verify, atol=args.atol, backend=args.backend, reference=reference,
                         num_threads=args.threads)
    axes = ['batch'] * result.dynamic_batch + ['height', 'width'] * result.dynamic_spatial
    print(f'wrote {result.path}: input {result.input_shape} (dynamic: {", ".join(axes) or "none"}), '
          f'{len(result.output_names)} outputs, opset {result.opset}')
    for shape, diff in result.max_abs_diff.items():
        print(f'verified with {args.backend}: input {shape}: max |onnx - torch| = {diff:.3g} (atol {args.atol:g})')
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    from rexnet_backbones.deploy import DeployDependencyError, OnnxVerificationError
    return run_cli(lambda _: export(args), debug=args.debug, errors=(DeployDependencyError, OnnxVerificationError))


if __name__ == '__main__':
    sys.exit(main())
