"""Benchmark models from configs or timm names: size, FLOPs, speed per backend, accuracy.

``rexnet-benchmark`` (``python tools/benchmark.py`` in a checkout runs the same ``main``).

    rexnet-benchmark MODEL [MODEL ...] [--baselines] [--input-size H W]
                              [--batch-sizes B [B ...]] [--runs N] [--warmup W]
                              [--device {cpu,cuda}] [--threads N] [--backbone-only]
                              [--backends eager channels_last compile onnxruntime openvino]
                              [--deploy {off,on,both}] [--reference MODEL|auto|none]
                              [--precisions fp32 [bf16] [int8]] [--calib DIR] [--calib-images N]
                              [--out-indices I ...]
                              [--checkpoints CKPT [CKPT ...]] [--work-dir DIR] [--layers [N]]
                              [--out-json FILE] [--out-md FILE] [--debug]
    rexnet-benchmark MODEL [MODEL ...] --train-step [--batch-sizes B] [--input-size H W]
                              [--runs N] [--warmup W] [--mem-efficient {on,off,both}] [--threads N]
                              [--device {cpu,cuda}] [--compile [{on,off,both}]] [--channels-last]
                              [--train-dtype {fp32,bf16}]

MODEL is a config file, ``package::relative/path.py`` inside an installed OpenMMLab package
(e.g. ``mmdet::retinanet/retinanet_r18_fpn_1x_coco.py``) or a timm model name (``rexnet_100``,
``regnetx_008``, ``rexnet_lite_100``: built ``features_only`` with ``--out-indices``).
What is measured and how: see ``rexnet_backbones.benchmark`` (module docstring).

``--train-step`` measures one training step (forward, backward, optimizer step) of each detector or
segmentor config, or of each timm classifier (1000 classes, cross-entropy, SGD), instead, each in a fresh
process, on the CPU or CUDA: images per second, peak memory above the model, step time and (eager configs)
the tensors autograd keeps; ``--compile`` uses torch.compile as mmengine's ``compile=True`` (configs) and
timm's ``--torchcompile`` (timm models) do, ``--compile both`` eager and compiled side by side
(``rexnet_backbones.benchmark.train_step``).

Output: a markdown table on stdout (headed by the machine and the settings; with ``--backends`` a
second table compares the backends side by side; then the cost model: activations, bytes moved,
roofline time on this machine's measured peak and bandwidth and the achieved fraction; with
``--layers`` the per-layer table of the first MODEL), optionally written to ``--out-md``, and a JSON
file (``--out-json``). Progress goes to stderr. A bad request prints one ``error: ...`` line and
exits 2 (``--debug``: with the traceback).
"""
import argparse
import os.path as osp
import sys

from ._args import add_debug_arg, add_threads_arg

#: = rexnet_backbones.benchmark.BACKENDS (tests/test_commands.py)
BACKENDS = ('eager', 'channels_last', 'compile', 'onnxruntime', 'openvino')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Params, GFLOPs, latency per backend (and COCO metrics) of mmdet/mmseg configs '
        'and timm models',
        epilog='Configs may be files or package::path (e.g. mmdet::retinanet/'
        'retinanet_r18_fpn_1x_coco.py). See the docstring of rexnet_backbones.benchmark for exactly what is timed.')
    parser.add_argument('models', nargs='+', metavar='MODEL',
                        help='config files, package::path configs or timm model names')
    parser.add_argument('--baselines', action='store_true',
                        help="add mmdet's RetinaNet R-18 / RegNetX-800MF / R-50 and Faster R-CNN "
                        'RegNetX-400MF configs')
    parser.add_argument('--input-size', nargs=2, type=int, default=[800, 1333], metavar=('H', 'W'),
                        help='image height and width before padding (default: 800 1333)')
    parser.add_argument('--batch-sizes', nargs='+', type=int, default=[1, 4], metavar='B',
                        help='batch sizes to time (default: 1 4; with --backends or --train-step the first one)')
    parser.add_argument('--runs', type=int, default=None,
                        help='timed runs per measurement; the median is reported (default: 10, with '
                        '--train-step 3; 0 = no timing, params and FLOPs only)')
    parser.add_argument('--warmup', type=int, default=None,
                        help='untimed runs before (default: 3, with --train-step 1)')
    parser.add_argument('--train-step', action='store_true',
                        help='measure a training step of each config instead: peak memory above the model, '
                        'step time and saved tensors, one fresh process per config')
    parser.add_argument('--mem-efficient', choices=['on', 'off', 'both'], default='on',
                        help="with --train-step: the ReXNet backbone's memory-efficient training forward "
                        '(on, its default), timm\'s modules as they are (off) or both side by side')
    parser.add_argument('--compile', nargs='?', const='on', default='off', choices=['on', 'off', 'both'],
                        help='with --train-step: torch.compile the step (on), not (off, the default), or both side '
                        'by side')
    parser.add_argument('--channels-last', action='store_true',
                        help='with --train-step: weights and inputs in channels-last memory format')
    parser.add_argument('--train-dtype', choices=['fp32', 'bf16'], default='fp32',
                        help='with --train-step: fp32, or bf16 autocast of forward and loss (default fp32)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default=None,
                        help='where to time (default: cpu, and cuda too when available; --train-step: cpu)')
    add_threads_arg(parser, help='CPU threads of torch, ONNX Runtime and OpenVINO (default: their own, what '
                    'the machine has)')
    parser.add_argument('--backbone-only', action='store_true',
                        help='measure model.backbone only (params, GFLOPs, latency)')
    parser.add_argument('--backends', nargs='+', choices=BACKENDS, default=[], metavar='BACKEND',
                        help=f'compare these CPU backends side by side ({", ".join(BACKENDS)}); '
                        "onnxruntime/openvino need pip install -e '.[deploy]'")
    parser.add_argument('--deploy', choices=['off', 'on', 'both'], default='both',
                        help='with --backends: also (both, the default) or only (on) run the deploy '
                        'form of each model (BN folded, padded widths, no partial-residual cat)')
    parser.add_argument('--reference', default='auto',
                        help='reference of the ratio columns: a MODEL (added when not measured '
                        'anyway), none, or auto (default: RegNetX-800MF, i.e. regnetx_008 or '
                        "mmdet's RetinaNet RegNetX-800MF config, when it is measured)")
    parser.add_argument('--precisions', nargs='+', choices=['fp32', 'bf16', 'int8'], default=['fp32'],
                        help='with --backends: bf16 adds bf16 columns, int8 post-training int8 columns of the ONNX '
                        'runtimes (ONNX Runtime static QDQ), each with its deviation from eager fp32')
    parser.add_argument('--calib', metavar='DIR', default=None,
                        help='int8: calibrate on images of DIR resized to --input-size (default: seeded random '
                        'inputs made as the timed one)')
    parser.add_argument('--calib-images', type=int, default=4, metavar='N',
                        help='int8: number of calibration inputs (default 4)')
    parser.add_argument('--out-indices', nargs='+', type=int, default=[1, 2, 3, 4], metavar='I',
                        help='feature levels of timm models (features_only; default: 1 2 3 4)')
    parser.add_argument('--channel-multiple', type=int, default=8,
                        help='deploy form: pad ReXNet widths to multiples of this (0: no padding)')
    parser.add_argument('--tolerance', type=float, default=1e-4,
                        help='max parity difference of a path that counts as fp32-exact (1e-4)')
    parser.add_argument('--checkpoints', nargs='+', default=None, metavar='CKPT',
                        help='one checkpoint per MODEL ("none" to skip one) to evaluate with '
                        "rexnet_backbones.engine.test (the config's test set must exist)")
    parser.add_argument('--work-dir', default=osp.join('work_dirs', 'benchmark'),
                        help='work directory of the evaluations (default: work_dirs/benchmark)')
    parser.add_argument('--layers', nargs='?', type=int, const=15, default=None, metavar='N',
                        help='time each layer of the first MODEL (eager fp32; channels_last when it is the first '
                        'of --backends; its deploy form with --deploy on) and show the top N (default 15) by '
                        'time against their roofline, and a summary per kind of layer')
    parser.add_argument('--out-json', default=None, help='write all raw numbers to this JSON file')
    parser.add_argument('--out-md', default=None, help='also write the markdown table(s) to this file')
    add_debug_arg(parser)
    return parser.parse_args(argv)


def benchmark(args, argv) -> int:
    from rexnet_backbones.benchmark import (Settings, run_benchmark, run_train_step_benchmark, write_outputs,
                                            write_train_step_outputs)
    runs = args.runs if args.runs is not None else (3 if args.train_step else 10)
    warmup = args.warmup if args.warmup is not None else (1 if args.train_step else 3)
    settings = Settings(
        models=args.models, baselines=args.baselines, input_size=tuple(args.input_size),
        batch_sizes=tuple(args.batch_sizes), runs=runs, warmup=warmup, device=args.device,
        threads=args.threads, backbone_only=args.backbone_only, checkpoints=args.checkpoints,
        work_dir=args.work_dir, backends=tuple(args.backends),
        deploy=args.deploy if args.backends or args.layers is not None else 'off', reference=args.reference,
        out_indices=tuple(args.out_indices), precisions=tuple(args.precisions),
        channel_multiple=args.channel_multiple, tolerance=args.tolerance, layers=args.layers,
        train_step=args.train_step,
        mem_efficient=args.mem_efficient, calib=args.calib, calib_images=args.calib_images,
        compile=args.compile, channels_last=args.channels_last, train_dtype=args.train_dtype)
    if settings.train_step:
        report, status = run_train_step_benchmark(settings, argv=argv)
        sys.stdout.write(write_train_step_outputs(report, args.out_json, args.out_md))
        sys.stdout.flush()
        return status
    report, status = run_benchmark(settings, argv=argv)
    table = write_outputs(report, args.out_json, args.out_md)
    sys.stdout.write(table)
    sys.stdout.flush()
    return status


def main(argv=None) -> int:
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    from rexnet_backbones.cli import run_cli
    from rexnet_backbones.errors import BenchmarkError
    return run_cli(lambda _: benchmark(args, argv), debug=args.debug, errors=(BenchmarkError,))


if __name__ == '__main__':
    sys.exit(main())
