"""The ReXNet paper's rank studies: random single layers, and design spaces (ReXNet vs RegNet).

``rexnet-rank-study`` (``python tools/rank_study.py`` in a checkout runs the same ``main``).

    rexnet-rank-study single-layer [--num-networks N] [--d-out D] [--n N] [--dim-ratios R ...]
                               [--nonlinearities F ...] [--estimator E ...] [--weight-scales S ...]
                               [--centring both|centred|uncentred] [--threads N] [--debug] --out-dir DIR
    rexnet-rank-study design-space [--spaces S ...] [--num-models N] [--flops F] [--flops-tol T]
                               [--input-size H W] [--num-images N] [--seed S] [--threads N] [--debug]
                               --out-dir DIR

    rexnet-rank-study trained [--spaces S ...] [--num-models N] [--flops LO HI] [--epochs E]
                               [--num-train N] [--lr LR] [--space-lr SPACE=LR ...] [--design matched|independent]
                               [--rows-per-channel K] [--train-seed K] [--data DIR] [--shard I/N] [--limit K]
                               [--threads N] [--debug] --out FILE.jsonl
    rexnet-rank-study trained-report --inputs FILE.jsonl ... --out-dir DIR
    rexnet-rank-study trained-sweep [settings] [--lrs A B C] [--sweep-models N] [--sweep-epochs E]
                               --out PREFIX
    rexnet-rank-study trained-noise [settings] [--noise-models N] [--noise-seeds K] --out PREFIX
    rexnet-rank-study trained-plan [settings] [sweep and noise options] --timing EARLIER.jsonl [--cores N]
    rexnet-rank-study trained-runs-report sweep|noise|budget --inputs FILE.jsonl ...
    rexnet-rank-study white-noise [--widths C ...] [--max-rows R] [--rows-per-channel K]

single-layer writes DIR/study.json (settings, the claims table, and one record per weight scale,
nonlinearity, d_in/d_out, centring and estimator), study.md, study.png (every nonlinearity and
estimator) and study_focus.png (the paper's nonlinearities, nuclear/effective/stable); design-space
writes DIR/design_space.json, design_space.md and design_space.png (EDFs). trained samples, trains and
measures models (RegNet's method, ``rexnet_backbones.analysis.trained_study``), appending one JSON line
per finished model to FILE (a rerun skips the models already there; ``--shard I/N`` runs every N-th
model from the I-th); trained-report merges shard files into DIR/trained.jsonl, trained.md,
error_edf.png and rank_vs_error.png (with the partial correlations and space differences of
``rexnet_backbones.analysis.trained_stats`` in trained.md and analysis.json). trained-sweep trains the
first models of each space at several learning rates (one file per rate), trained-noise retrains the
first models with other training seeds (one file per seed), trained-plan prints every run of a study
with its command and estimated hours, and trained-runs-report summarises sweep or noise files, or
compares the same networks under two budgets (budget: e.g. 1 epoch against 3).
white-noise prints the rank statistics of i.i.d. Gaussian features against width (what width alone
does to each statistic). The library is ``rexnet_backbones.analysis``. A value no study can use
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
from rexnet_backbones.cli import parse_shard, run_cli, set_threads

from ._args import add_debug_arg, add_threads_arg


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
    w = sub.add_parser('white-noise', help='the rank statistics of i.i.d. Gaussian features against width C')
    w.add_argument('--widths', type=int, nargs='+', default=[64, 128, 256, 512, 1024])
    w.add_argument('--max-rows', type=int, default=1024, help='rows of the older (capped) statistic')
    w.add_argument('--rows-per-channel', type=int, default=4)
    w.add_argument('--estimator', default='nuclear', choices=ESTIMATORS)
    w.add_argument('--seed', type=int, default=0)
    add_threads_arg(w)
    add_debug_arg(w)
    _trained_parsers(sub)
    return p.parse_args(argv)


def white_noise(args) -> int:
    from rexnet_backbones.analysis.estimators import white_noise_widths
    set_threads(args.threads)
    rows = white_noise_widths(args.widths, args.max_rows, args.rows_per_channel, args.estimator, args.seed)
    print(f'i.i.d. Gaussian features, `{args.estimator}` rank: ratio to min(rows, C) at {args.max_rows} rows '
          f'(capped), at {args.rows_per_channel} x C rows (fixed), and ratio to the white-noise null at '
          f'{args.max_rows} rows (null)\n')
    print('| C | capped, centred | capped, uncentred | fixed, centred | fixed, uncentred | null, centred | '
          'null, uncentred |')
    print('|---:|---:|---:|---:|---:|---:|---:|')
    for r in rows:
        cells = [f"{r[c][k]:.3f}" for k in ('capped', 'fixed', 'null') for c in ('centred', 'uncentred')]
        print(f"| {r['channels']} | " + ' | '.join(cells) + ' |')
    return 0


def _settings_args(s, d) -> None:
    """The arguments of a study's settings (shared by trained, trained-sweep, trained-noise, trained-plan)."""
    from rexnet_backbones.analysis.spaces import DEFAULT_SPACES, DESIGNS, TRAINED_SPACES
    from rexnet_backbones.analysis.trained_study import OPTIMIZERS, RANK_ESTIMATORS
    s.add_argument('--spaces', nargs='+', default=list(DEFAULT_SPACES), choices=TRAINED_SPACES)
    s.add_argument('--num-models', type=int, default=d.num_models, help='models per space')
    s.add_argument('--flops', type=float, nargs=2, default=list(d.flops), metavar=('LO', 'HI'),
                   help='FLOP regime: multiply-adds of one image at --input-size')
    s.add_argument('--input-size', type=int, default=d.input_size)
    s.add_argument('--stem-stride', type=int, default=d.stem_stride, choices=(1, 2),
                   help="the 3x3 stem's stride: 1 (pycls's CIFAR stem, the default) or 2 (ImageNet's)")
    s.add_argument('--epochs', type=int, default=d.epochs)
    s.add_argument('--batch-size', type=int, default=d.batch_size)
    s.add_argument('--optimizer', default=d.optimizer, choices=OPTIMIZERS)
    s.add_argument('--lr', type=float, default=d.lr)
    s.add_argument('--space-lr', nargs='+', default=[], metavar='SPACE=LR',
                   help='per-space learning rates (e.g. the best of trained-sweep); other spaces use --lr')
    s.add_argument('--weight-decay', type=float, default=d.weight_decay)
    s.add_argument('--zero-init-last', action='store_true',
                   help="zero-init the last BN of every residual branch (pycls's BN.ZERO_INIT_FINAL_GAMMA)")
    s.add_argument('--num-train', type=int, default=d.num_train)
    s.add_argument('--num-val', type=int, default=d.num_val)
    s.add_argument('--data', default=d.data, help="ImageFolder tree with train/ and val/ (or test/); default: "
                   "'generated' (shape x texture set, made in memory)")
    s.add_argument('--rank-images', type=int, default=d.rank_images)
    s.add_argument('--max-rows', type=int, default=d.max_rows, help='rows of the older all-layer rank ratio')
    s.add_argument('--rows-per-channel', type=int, default=d.rows_per_channel,
                   help='rows per channel (no cap) of the width-free rank statistics')
    s.add_argument('--estimator', nargs='+', default=list(RANK_ESTIMATORS), choices=ESTIMATORS)
    s.add_argument('--max-tries', type=int, default=d.max_tries, help='samples per model before the FLOP error')
    s.add_argument('--design', default=d.design, choices=DESIGNS,
                   help="'matched' (a family's spaces share every sampled network; default) or 'independent' "
                        '(the older sampler, one stream per space)')
    s.add_argument('--seed', type=int, default=d.seed)


def _run_args(s) -> None:
    s.add_argument('--shard', metavar='I/N', help='run shard I of N (1 <= I <= N; disjoint; default: all)')
    s.add_argument('--limit', type=int, default=None, help='train at most this many models now (per run)')
    s.add_argument('--device', default='cpu', help="'cpu' or 'cuda' (not part of the study settings)")
    add_threads_arg(s)
    add_debug_arg(s)


def _plan_args(s) -> None:
    s.add_argument('--lrs', type=float, nargs='+', default=[2e-3, 6e-3, 1.8e-2], help='learning rates to sweep')
    s.add_argument('--sweep-models', type=int, default=10, help='models per space in the sweep (the first ones)')
    s.add_argument('--sweep-epochs', type=int, default=None, help='epochs in the sweep (default: --epochs)')
    s.add_argument('--noise-models', type=int, default=10, help='models per space retrained for seed noise')
    s.add_argument('--noise-seeds', type=int, default=2, help='extra training seeds per noise model '
                   '(with the main run: seeds + 1 errors per model)')


def _trained_parsers(sub) -> None:
    from rexnet_backbones.analysis.trained_study import StudySettings
    d = StudySettings()
    s = sub.add_parser('trained', help="RegNet's method, trained: sample, train and measure models per space")
    _settings_args(s, d)
    s.add_argument('--train-seed', type=int, default=d.train_seed,
                   help='0: each model its own training seed; k > 0: another training run of the same models')
    s.add_argument('--out', required=True, help='JSON-lines file; appended to, resumed from')
    _run_args(s)
    w = sub.add_parser('trained-sweep', help='learning-rate sweep: the first --sweep-models models per space at '
                       'each of --lrs, one file per rate (OUT.lr<rate>.jsonl)')
    _settings_args(w, d)
    _plan_args(w)
    w.add_argument('--out', required=True, help='file prefix')
    _run_args(w)
    n = sub.add_parser('trained-noise', help='seed noise: the first --noise-models models per space retrained '
                       'with training seeds 1..--noise-seeds, one file per seed (OUT.seed<k>.jsonl)')
    _settings_args(n, d)
    _plan_args(n)
    n.add_argument('--out', required=True, help='file prefix')
    _run_args(n)
    p = sub.add_parser('trained-plan', help='print the sweep + noise + main runs of a study, their commands and '
                       'the estimated hours (from the per-space cpu_seconds of an earlier 1-epoch study file)')
    _settings_args(p, d)
    _plan_args(p)
    p.add_argument('--timing', required=True, help='an earlier study file (its cpu_seconds per space)')
    p.add_argument('--cores', type=int, default=2, help='parallel shards (one thread each)')
    add_debug_arg(p)
    r = sub.add_parser('trained-report', help='merge shard files of a trained study; tables and figures')
    r.add_argument('--inputs', nargs='+', required=True)
    r.add_argument('--estimator', default='nuclear', choices=ESTIMATORS)
    r.add_argument('--out-dir', required=True)
    add_debug_arg(r)
    q = sub.add_parser('trained-runs-report', help='learning-rate sweep, seed-noise or budget files: median error '
                       'per space and rate; the within-model seed spread against the between-model spread, the '
                       'seed-to-seed rho and the matched space differences per seed; or '
                       'the same networks under two training budgets (e.g. 1 epoch against 3)')
    q.add_argument('kind', choices=('sweep', 'noise', 'budget'))
    q.add_argument('--inputs', nargs='+', required=True,
                   help='the run files (noise: the main file first; budget: exactly two, the shorter run first)')
    add_debug_arg(q)


def _settings(args):
    from rexnet_backbones.analysis import trained_study
    return trained_study.StudySettings(
        spaces=tuple(args.spaces), num_models=args.num_models, flops=tuple(args.flops), input_size=args.input_size,
        stem_stride=args.stem_stride, epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
        lr=args.lr, weight_decay=args.weight_decay, zero_init_last=args.zero_init_last,
        num_train=args.num_train, num_val=args.num_val, data=args.data, rank_images=args.rank_images,
        max_rows=args.max_rows, estimators=tuple(args.estimator), max_tries=args.max_tries, seed=args.seed,
        design=args.design, rows_per_channel=args.rows_per_channel, train_seed=getattr(args, 'train_seed', 0),
        space_lrs=_space_lrs(args.space_lr))


def _space_lrs(items):
    from rexnet_backbones.errors import InvalidInputError
    out = []
    for item in items:
        space, _, value = item.partition('=')
        try:
            out.append((space, float(value)))
        except ValueError:
            raise InvalidInputError(f'--space-lr {item!r}: give SPACE=LR, e.g. regnetx=0.002') from None
    return tuple(out)


def _plan(args, settings):
    """(name, settings, out file) of every run of the plan: sweep, noise, main."""
    from dataclasses import replace

    from rexnet_backbones.analysis import trained_study as ts
    sweep = [replace(x, epochs=args.sweep_epochs or x.epochs)
             for x in ts.lr_sweep_settings(settings, args.lrs, args.sweep_models)]
    noise = ts.noise_settings(settings, args.noise_models, args.noise_seeds)
    return sweep, noise


def trained(args) -> int:
    from rexnet_backbones.analysis import trained_report, trained_stats, trained_study
    if args.study == 'trained-report':
        md, names = trained_report.write_report(args.inputs, args.out_dir, args.estimator)
        print(md)
        print('wrote ' + ', '.join(names))
        return 0
    if args.study == 'trained-runs-report':
        from rexnet_backbones.errors import InvalidInputError
        if args.kind == 'budget' and len(args.inputs) != 2:
            raise InvalidInputError(f'trained-runs-report budget compares two runs, got {len(args.inputs)} files; '
                                    'give --inputs SHORT.jsonl LONG.jsonl (merge shards first)')
        runs = [trained_report.merge_records([f]) for f in args.inputs]
        if args.kind == 'budget':
            md = trained_stats.budget_markdown(*runs)
        else:
            md = trained_stats.sweep_markdown(runs) if args.kind == 'sweep' else trained_stats.noise_markdown(runs)
        print(md)
        return 0
    settings = _settings(args)
    settings.check()
    if args.study == 'trained-plan':
        sweep, noise = _plan(args, settings)
        timing = trained_stats.seconds_per_model_epoch(trained_report.merge_records([args.timing]))
        plan = trained_study.budget(sweep + noise + [settings], timing, cores=args.cores,
                                    reference_images=trained_report.merge_records([args.timing])[0]['settings']
                                    ['num_train'])
        print(trained_stats.plan_markdown(plan, timing))
        return 0
    set_threads(args.threads)
    shard = parse_shard(args.shard, '--shard')
    if args.study == 'trained':
        runs = [(settings, args.out)]
    elif args.study == 'trained-sweep':
        runs = [(x, f'{args.out}.lr{x.lr:g}.jsonl') for x in _plan(args, settings)[0]]
    else:
        runs = [(x, f'{args.out}.seed{x.train_seed}.jsonl') for x in _plan(args, settings)[1]]
    for run_settings, out in runs:
        new = trained_study.run_study(run_settings, out, shard, args.limit, device=args.device)
        print(f'{len(new)} models trained, appended to {out}')
    return 0


def study(args) -> int:
    if args.study.startswith('trained'):
        return trained(args)
    if args.study == 'white-noise':
        return white_noise(args)
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
