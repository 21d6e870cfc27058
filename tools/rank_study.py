#!/usr/bin/env python
"""The ReXNet paper's rank studies: random single layers, and design spaces (ReXNet vs RegNet).

    python tools/rank_study.py single-layer [--num-networks N] [--d-out D] [--n N] [--dim-ratios R ...]
                               [--nonlinearities F ...] [--estimator E ...] [--weight-scales S ...]
                               [--centring both|centred|uncentred] [--threads N] [--debug] --out-dir DIR
    python tools/rank_study.py design-space [--spaces S ...] [--num-models N] [--flops F] [--flops-tol T]
                               [--input-size H W] [--num-images N] [--seed S] [--threads N] [--debug]
                               --out-dir DIR

single-layer writes DIR/study.json (settings, the claims table, and one record per weight scale,
nonlinearity, d_in/d_out, centring and estimator), study.md, study.png (every nonlinearity and
estimator) and study_focus.png (the paper's nonlinearities, nuclear/effective/stable); design-space writes DIR/design_space.json, design_space.md and
design_space.png (EDFs). The library is ``rexnet_backbones.analysis``. A value no study can use
prints one ``error: ...`` line and exits 2 (``--debug``: with the traceback).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from rexnet_backbones.analysis import DEFAULT_RTOL, ESTIMATORS, NONLINEARITIES, SPACES
from rexnet_backbones.analysis import design_space as ds
from rexnet_backbones.analysis import single_layer as sl
from rexnet_backbones.analysis import single_layer_report as slr
from rexnet_backbones.cli import add_debug_arg, add_threads_arg, run_cli, set_threads


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = p.add_subparsers(dest='study', required=True)
    for name in ('single-layer', 'design-space'):
        s = sub.add_parser(name)
        s.add_argument('--estimator', nargs='+', default=list(ESTIMATORS), choices=ESTIMATORS)
        s.add_argument('--rtol', type=float, default=DEFAULT_RTOL, help='relative tolerance of numerical_rtol')
        s.add_argument('--center', action='store_true', help='centre each channel before the SVD')
        s.add_argument('--seed', type=int, default=0)
        s.add_argument('--out-dir', required=True)
        add_threads_arg(s)
        add_debug_arg(s)
        if name == 'single-layer':
            s.add_argument('--num-networks', type=int, default=150, help='random layers per point (paper: 10,000)')
            s.add_argument('--d-out', type=int, default=64)
            s.add_argument('--n', type=int, default=256, help='samples (columns of X); >= d_out')
            s.add_argument('--dim-ratios', type=float, nargs='+', default=list(sl.DEFAULT_DIM_RATIOS))
            s.add_argument('--nonlinearities', nargs='+', default=list(NONLINEARITIES), choices=list(NONLINEARITIES))
            s.add_argument('--weight-std', default='fan_in', choices=('fan_in', 'unit'),
                           help='one weight scale (see --weight-scales)')
            s.add_argument('--weight-scales', nargs='+', default=None, metavar='SCALE',
                           help="sweep: fan_in, unit or a pre-activation std, e.g. 'fan_in unit 8' (ReLU6 clips "
                                '23%% of the pre-activations at 8)')
            s.add_argument('--centring', default='both', choices=('both', 'centred', 'uncentred'),
                           help='features centred, uncentred or both (the default); --center = centred')
            s.add_argument('--n-boot', type=int, default=2000, help='bootstrap resamples of the claims table')
        else:
            s.add_argument('--spaces', nargs='+', default=list(SPACES), choices=SPACES)
            s.add_argument('--num-models', type=int, default=6, help='networks per space')
            s.add_argument('--flops', type=float, default=400e6, help='FLOP budget (one image, multiply-adds)')
            s.add_argument('--flops-tol', type=float, default=0.1)
            s.add_argument('--input-size', type=int, nargs=2, default=[224, 224], metavar=('H', 'W'))
            s.add_argument('--num-images', type=int, default=32)
            s.add_argument('--max-rows', type=int, default=2048)
            s.add_argument('--expand-layers', action='store_true', help='also expand layers, not only blocks')
    return p.parse_args(argv)


def study(args) -> int:
    set_threads(args.threads)
    os.makedirs(args.out_dir, exist_ok=True)
    out = args.out_dir
    if args.study == 'single-layer':
        centring = 'centred' if args.center else args.centring
        records = sl.single_layer_study(args.nonlinearities, args.dim_ratios, args.d_out, args.n, args.num_networks,
                                        args.estimator, None if centring == 'both' else centring == 'centred',
                                        args.rtol, args.weight_std, args.seed, progress=True,
                                        weight_scales=args.weight_scales)
        claims = slr.paper_claims(records, n_boot=args.n_boot, seed=args.seed)
        with open(os.path.join(out, 'study.json'), 'w') as f:  # per-network values: regenerate from the seed
            json.dump(dict(settings=vars(args), claims=claims,
                           records=[{k: v for k, v in r.items() if k != 'values'} for r in records]), f, indent=1)
        md = slr.study_markdown(records, claims=claims)
        slr.plot_study(records, os.path.join(out, 'study.png'))
        slr.plot_study(records, os.path.join(out, 'study_focus.png'), *slr.FOCUS)
        names = ('study.json', 'study.md', 'study.png', 'study_focus.png')
    else:
        records = ds.design_space_study(args.spaces, args.num_models, args.flops, args.flops_tol,
                                        tuple(args.input_size), args.num_images, args.estimator, args.center,
                                        args.rtol, args.max_rows, args.expand_layers, args.seed, progress=True)
        with open(os.path.join(out, 'design_space.json'), 'w') as f:
            json.dump(dict(settings=vars(args), summary=ds.space_summary(records), networks=records), f, indent=1)
        md = ds.design_markdown(records, f'{args.num_models} networks per space, {args.flops / 1e6:.0f} MFLOPs '
                                f'+-{args.flops_tol:.0%} at {args.input_size[0]}x{args.input_size[1]}, '
                                f'{args.num_images} standard-normal images, random init, seed {args.seed}, '
                                f"features {'centred' if args.center else 'not centred'}.")
        ds.plot_edfs(records, os.path.join(out, 'design_space.png'))
        names = ('design_space.json', 'design_space.md', 'design_space.png')
    with open(os.path.join(out, names[1]), 'w') as f:  # study.md / design_space.md
        f.write(md)
    print(md)
    print('wrote ' + ', '.join(os.path.join(out, n) for n in names))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_cli(lambda _: study(args), debug=args.debug)


if __name__ == '__main__':
    sys.exit(main())
