"""Rank along a network: every block's output (and expand layers), per model.

``rexnet-rank-analysis`` (``python tools/rank_analysis.py`` in a checkout runs the same ``main``).

    rexnet-rank-analysis MODEL [MODEL ...] [--checkpoint FILE ...] [--images DIR | --synthetic]
                                  [--num-images N] [--input-size H W] [--estimator E ...] [--threads N]
                                  [--debug] --out-dir DIR

    python tools/rank_analysis.py --compare RANK_A.json RANK_B.json [--estimator E]

MODEL is a timm name (e.g. rexnet_100, regnetx_008, resnet18) or an mmdet/mmseg config (file or
``mmdet::path.py``) whose backbone is analysed. Writes DIR/rank.json, rank.png and rank.md; the
library is ``rexnet_backbones.analysis`` (see its docstrings for what is measured). Every layer is
measured centred and uncentred, its ratios are to min(rows, channels), and a layer with fewer than
--rows-per-channel rows per channel is flagged row-capped (rank.md marks it). A bad model
name, a missing config, checkpoint or image folder prints one ``error: ...`` line before any
computation and exits 2 (``--debug``: with the traceback). ``--compare`` reads two rank.json files of
the same models (e.g. ``--seed 0`` and ``--seed 1``) and prints the largest difference of a stage's mean
and minimum rank ratio per model and centring.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from ._args import add_debug_arg, add_threads_arg

#: = rexnet_backbones.analysis.ESTIMATORS and DEFAULT_RTOL (tests/test_commands.py)
ESTIMATORS = ('nuclear', 'effective', 'stable', 'numerical', 'numerical_rtol')
DEFAULT_RTOL = 1e-3


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('models', nargs='*', metavar='MODEL', help='timm model name or mmdet/mmseg config')
    p.add_argument('--compare', nargs=2, metavar=('RANK_A', 'RANK_B'),
                   help='two rank.json files of the same models: their largest stage differences (no MODEL)')
    p.add_argument('--checkpoint', nargs='+', default=None, metavar='FILE',
                   help='one weights file per MODEL ("none" to keep one at random init)')
    p.add_argument('--checkpoint-prefix', default=None, help="key prefix to load, e.g. 'backbone.' for a detector")
    src = p.add_mutually_exclusive_group()
    src.add_argument('--images', metavar='DIR', help='folder of images (ImageNet normalisation)')
    src.add_argument('--synthetic', action='store_true', help='standard-normal images (the default)')
    p.add_argument('--num-images', type=int, default=64)
    p.add_argument('--input-size', type=int, nargs=2, default=[224, 224], metavar=('H', 'W'))
    p.add_argument('--estimator', nargs='+', default=list(ESTIMATORS), choices=ESTIMATORS,
                   help='estimators; the first one is used for rank.md')
    p.add_argument('--rtol', type=float, default=DEFAULT_RTOL, help='relative tolerance of numerical_rtol')
    p.add_argument('--center', action='store_true',
                   help="bottlenecks and rank.json's rank/rank_ratio from centred features (both are reported)")
    p.add_argument('--bn-stats', default='auto', choices=('auto', 'running', 'batch'),
                   help='BatchNorm statistics: batch ones at random init, stored ones with a checkpoint (auto)')
    p.add_argument('--max-rows', type=int, default=4096,
                   help='rows (positions) sampled per layer, raised to --rows-per-channel x channels for wide layers')
    p.add_argument('--rows-per-channel', type=int, default=4,
                   help='a layer with fewer rows per channel is flagged row-capped')
    p.add_argument('--row-cap', type=int, default=16384, help='most rows per layer (SVD cost)')
    p.add_argument('--no-expand', action='store_true', help='block outputs only')
    p.add_argument('--threshold', type=float, default=0.5, help='rank ratio below which a layer is a bottleneck')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out-dir', help='where rank.json, rank.png and rank.md go (required with MODEL)')
    add_threads_arg(p)
    add_debug_arg(p)
    return p.parse_args(argv)


def compare(args) -> int:
    from rexnet_backbones.analysis.network_report import seed_differences, seed_markdown
    from rexnet_backbones.errors import InputNotFoundError
    runs = []
    for path in args.compare:
        if not os.path.isfile(path):
            raise InputNotFoundError(f'no rank file {path}; give two rank.json files this tool wrote')
        with open(path) as f:
            runs.append(json.load(f))
    print(seed_markdown(seed_differences(runs[0], runs[1], args.estimator[0], args.threshold), args.estimator[0]))
    return 0


def analyse(args) -> int:
    from rexnet_backbones.errors import InvalidInputError
    if args.compare:
        if args.models:
            raise InvalidInputError('--compare takes two rank.json files and no MODEL; give one or the other')
        return compare(args)
    if not args.models or not args.out_dir:
        raise InvalidInputError('give MODEL ... and --out-dir DIR (or --compare RANK_A.json RANK_B.json)')
    from rexnet_backbones.analysis import analyse_models
    from rexnet_backbones.analysis.network_report import plot_profiles, profile_markdown
    from rexnet_backbones.cli import set_threads
    set_threads(args.threads)
    results = analyse_models(
        args.models, args.checkpoint, args.images, args.num_images, tuple(args.input_size), args.estimator,
        args.center, args.rtol, args.max_rows, not args.no_expand, args.seed, args.checkpoint_prefix, progress=True,
        bn_stats=args.bn_stats, rows_per_channel=args.rows_per_channel, row_cap=args.row_cap)
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, 'rank.json'), 'w') as f:
        json.dump(results, f, indent=1)
    plot_profiles(results, args.estimator, os.path.join(args.out_dir, 'rank.png'))
    md = profile_markdown(results, args.estimator[0], args.threshold)
    with open(os.path.join(args.out_dir, 'rank.md'), 'w') as f:
        f.write(md)
    print(md)
    print(f'wrote {args.out_dir}/rank.json, rank.png, rank.md')
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    from rexnet_backbones.cli import run_cli
    return run_cli(lambda _: analyse(args), debug=args.debug)


if __name__ == '__main__':
    sys.exit(main())
