"""Export a ReXNet model to ONNX (and verify it against PyTorch).

``rexnet-export`` (``python tools/export.py`` in a checkout runs the same ``main``).

    rexnet-export SOURCE OUT.onnx [--checkpoint FILE] [--features-only]
                           [--input-size H W] [--batch-size N] [--fuse-bn] [--deploy] [--verify]
                           [--backend {onnxruntime,openvino}] [--atol A] [--opset N] [--dynamo]
                           [--int8 --calib DIR [--calib-images N] [--calib-method M]]
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

``--int8`` writes a post-training int8 model instead (``rexnet_backbones.deploy.quantize``: ONNX Runtime's
static quantization, QDQ format, int8 per-channel weights, uint8 activations), calibrated on the first
``--calib-images`` (16) images of ``--calib DIR`` preprocessed as the model's test data (the config's test
pipeline and data preprocessor; timm's eval transform). ``--verify`` then checks the fp32 graph it started
from; the int8 deviation from fp32 on the calibration images is printed. The int8 file is an ONNX file like
the others: ``tools/test.py CONFIG OUT.onnx --backend onnxruntime`` evaluates it.

Exportable: timm model names, single-stage detectors (RetinaNet, SSD/SSDLite, FCOS, ...) and mmseg
``EncoderDecoder`` segmentors; a two-stage detector (Faster/Mask R-CNN) stops with an error that
says so. A known error prints one ``error: ...`` line and exits 2 (``--debug``: with the traceback).
"""
import argparse
import sys

from ._args import add_debug_arg, add_threads_arg


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
    parser.add_argument('--int8', action='store_true',
                        help='write a post-training int8 model (ONNX Runtime static QDQ), calibrated on --calib')
    parser.add_argument('--calib', metavar='DIR', help='--int8: folder of calibration images (searched recursively)')
    parser.add_argument('--calib-images', type=int, default=16, metavar='N',
                        help='--int8: number of calibration images (the first N in sorted order; default 16)')
    parser.add_argument('--calib-method', choices=('minmax', 'entropy', 'percentile'), default='minmax',
                        help='--int8: how activation ranges are calibrated (default minmax)')
    add_threads_arg(parser, help='CPU threads of torch and of the --verify runtime (default: what the machine has)')
    add_debug_arg(parser)
    return parser.parse_args(argv)


def _check_int8_args(args) -> list:
    """The calibration images of ``--int8 --calib`` (checked before anything is built), else []."""
    from rexnet_backbones.errors import InvalidInputError
    if not args.int8:
        if args.calib is not None:
            raise InvalidInputError('--calib is for --int8: add --int8 to write an int8 model, or leave out --calib')
        return []
    if args.calib is None:
        raise InvalidInputError('--int8 needs calibration images: add --calib DIR (a folder of images, e.g. '
                                "the synthetic set's coco/val2017)")
    from rexnet_backbones.deploy.calibration import find_images
    return find_images(args.calib, args.calib_images)


def export(args):
    from rexnet_backbones.deploy import build_source_model, deploy_model, export_onnx
    from rexnet_backbones.cli import set_threads
    from rexnet_backbones.deploy.onnx import require
    set_threads(args.threads)
    images = _check_int8_args(args)
    require('onnx')
    if args.verify or args.int8:
        require('onnxruntime' if args.int8 else args.backend)
    model, src = build_source_model(args.source, args.checkpoint, args.features_only, args.fuse_bn)
    size = tuple(args.input_size) if args.input_size else src.input_size
    reference = model
    if args.deploy:  # as the benchmark's '+deploy' ONNX Runtime / OpenVINO paths
        model = deploy_model(model, residual='pad', channel_multiple=8)
    common = dict(opset=args.opset, dynamo=args.dynamo, verify=args.verify, atol=args.atol, backend=args.backend,
                  reference=reference, num_threads=args.threads)
    if args.int8:
        from rexnet_backbones.deploy.quantize import export_int8
        int8 = export_int8(model, args.out, (args.batch_size, 3, *size), images, cfg=src.cfg, scope=src.scope,
                           preprocess_model=reference, method=args.calib_method, **common)
        result = int8.export
    else:
        result = export_onnx(model, args.out, (args.batch_size, 3, *size), **common)
    axes = ['batch'] * result.dynamic_batch + ['height', 'width'] * result.dynamic_spatial
    print(f'wrote {result.path}: input {result.input_shape} (dynamic: {", ".join(axes) or "none"}), '
          f'{len(result.output_names)} outputs, opset {result.opset}' + (', int8' if args.int8 else ''))
    for shape, diff in result.max_abs_diff.items():
        print(f'verified with {args.backend}: input {shape}: max |onnx - torch| = {diff:.3g} (atol {args.atol:g})'
              + (' (the fp32 graph before quantization)' if args.int8 else ''))
    if args.int8:
        q = int8.quantize
        print(f'int8: {q.quantize_nodes} QuantizeLinear / {q.dequantize_nodes} DequantizeLinear nodes, calibrated '
              f'({q.method}) on {q.calibration_inputs} image(s) from {args.calib}; on {int8.compared} of them '
              f'max |int8 - fp32| = {int8.max_abs_diff:.3g} (max |fp32 output| = {int8.fp32_max_abs:.3g})')
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    from rexnet_backbones.cli import run_cli
    from rexnet_backbones.errors import DeployDependencyError, OnnxVerificationError
    return run_cli(lambda _: export(args), debug=args.debug, errors=(DeployDependencyError, OnnxVerificationError))


if __name__ == '__main__':
    sys.exit(main())
