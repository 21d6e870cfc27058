"""Run a benchmark suite (many backbones x seeds on one recipe) and report it.

``rexnet-suite`` (``python tools/suite.py`` in a checkout runs the same ``main``).

    rexnet-suite run SUITE [--work-dir DIR] [--launcher none|pytorch|slurm] [--gpus-per-job N]
                              [--jobs I/N] [--retry-failed] [--dry-run] [--threads N] [--debug]
    rexnet-suite report SUITE|DIR [--out-dir DIR] [--debug]
    rexnet-suite reanalyse RESULTS.json [RESULTS.json ...] [--debug]

SUITE is a suite file or one of ours by short name (suites/det_synthetic.py); the format is in
``rexnet_backbones/suite/__init__.py``. ``run`` trains and tests every (model, seed) job not yet finished
into ``work_dirs/suites/<name>`` (killed jobs resume from their last checkpoint; failed ones are kept
unless --retry-failed); ``reanalyse`` recomputes the comparisons of written reports from the per-seed
values in their results.json (t interval, paired t p, Holm within each report and across all files,
minimal detectable difference at 80% power); ``--jobs I/N`` runs the I-th of N disjoint shards (other processes or
machines run the others into the same work dir). ``--launcher pytorch`` runs each job with
``torchrun --nproc_per_node N``, ``slurm`` as an ``srun`` step (PARTITION, GPUS_PER_NODE, CPUS_PER_TASK,
SRUN_ARGS as mmdet's tools/slurm_train.sh); ``--dry-run`` prints the jobs and commands. Exit code 1
when a job failed or is missing, 2 on a user error (one ``error:`` line).
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

from ._args import add_debug_arg, add_threads_arg


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Run a benchmark suite and report it')
    sub = parser.add_subparsers(dest='command', required=True)
    run = sub.add_parser('run', help='train and test the jobs of a suite')
    run.add_argument('suite', help='suite file, or a short name such as suites/det_synthetic.py')
    run.add_argument('--work-dir', help='default: work_dirs/suites/<suite name>')
    run.add_argument('--launcher', choices=('none', 'pytorch', 'slurm'), default='none')
    run.add_argument('--gpus-per-job', type=int, default=1, metavar='N', help='processes (GPUs) per job')
    run.add_argument('--jobs', metavar='I/N', help='run shard I of N (disjoint; default: all jobs)')
    run.add_argument('--retry-failed', action='store_true', help='run failed jobs again')
    run.add_argument('--dry-run', action='store_true', help='print the jobs and commands, run nothing')
    add_threads_arg(run)
    add_debug_arg(run)
    rep = sub.add_parser('report', help='results.json, results.md and a plot of a suite work dir')
    rep.add_argument('target', help='a suite work dir, or a suite file (its default work dir)')
    rep.add_argument('--out-dir', help='default: the work dir')
    add_debug_arg(rep)
    rea = sub.add_parser('reanalyse', help="recompute written reports' comparisons from their results.json")
    rea.add_argument('results', nargs='+', help='results.json files of suite reports')
    rea.add_argument('--out', help='also write the table to this markdown file')
    add_debug_arg(rea)
    return parser.parse_args(argv)


def _reanalyse(files, out=None) -> int:
    from rexnet_backbones.checkpoint import atomic_write
    from rexnet_backbones.suite.report import reanalyse
    md, _ = reanalyse(files)
    print(md, end='')
    if out:
        head = ('Comparisons of the suite reports ' + ', '.join(f'`{f}`' for f in files) + ' recomputed from '
                'their per-seed values (`python tools/suite.py reanalyse ...`): paired differences with the '
                "Student t 95% interval, the paired t test's p, Holm's adjustment within each report and across "
                'all of them, and the minimal detectable difference (MDD) at 80% power.\n\n')
        atomic_write(out, head + md)
    return 0


def _report(target: str, out_dir) -> int:
    from rexnet_backbones.suite import load_suite, write_report
    from rexnet_backbones.suite.run import default_work_dir
    work_dir = target if osp.isdir(target) else default_work_dir(load_suite(target))
    write_report(work_dir, out_dir)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    from rexnet_backbones.cli import run_cli, set_threads
    if args.command == 'run':
        def job(_):
            from rexnet_backbones.suite import run_suite
            set_threads(args.threads)
            return run_suite(args.suite, work_dir=args.work_dir, launcher=args.launcher,
                             gpus_per_job=args.gpus_per_job, jobs=args.jobs, threads=args.threads,
                             dry_run=args.dry_run, retry_failed=args.retry_failed)
        return run_cli(job, debug=args.debug)
    if args.command == 'reanalyse':
        return run_cli(lambda _: _reanalyse(args.results, args.out), debug=args.debug)
    return run_cli(lambda _: _report(args.target, args.out_dir), debug=args.debug)


if __name__ == '__main__':
    sys.exit(main())
