"""Generate the small synthetic detection/segmentation sets used by the smoke tests and demos.

``rexnet-make-synthetic-data`` (``python tools/make_synthetic_data.py`` in a checkout runs the same ``main``).

    rexnet-make-synthetic-data [--out data/synthetic] [--num-train N] [--num-val N]
                                        [--img-size H W] [--seed S] [--kind det|seg|all] [--force]

Writes ``<out>/coco`` (COCO layout, read by mmdet's ``CocoDataset``) and/or ``<out>/seg``
(``img_dir``/``ann_dir`` layout, read by mmseg's ``BaseSegDataset``). A set that is already
complete with the same parameters is kept (pass ``--force`` to rewrite it). A bad value or an
output folder holding other files prints one ``error: ...`` line and exits 2 (``--debug``: with the
traceback).
"""
import argparse
import os.path as osp
import sys

from ._args import add_debug_arg

#: = rexnet_backbones.data.synthetic.DEFAULT_DATA_ROOT, DET_SUBDIR, SEG_SUBDIR (tests/test_commands.py)
DEFAULT_DATA_ROOT = 'data/synthetic'
DET_SUBDIR = 'coco'
SEG_SUBDIR = 'seg'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default=DEFAULT_DATA_ROOT,
                        help=f'output root (default: {DEFAULT_DATA_ROOT}); det goes to '
                        f'<out>/{DET_SUBDIR}, seg to <out>/{SEG_SUBDIR}')
    parser.add_argument('--num-train', type=int, default=32, help='training images per set')
    parser.add_argument('--num-val', type=int, default=8, help='validation images per set')
    parser.add_argument('--img-size', type=int, nargs=2, default=(128, 128),
                        metavar=('H', 'W'), help='image height and width (default: 128 128)')
    parser.add_argument('--num-classes', type=int, default=3,
                        help='number of shape classes (default: 3)')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default: 0)')
    parser.add_argument('--kind', choices=['det', 'seg', 'all'], default='all',
                        help='which set to write (default: all)')
    parser.add_argument('--force', action='store_true',
                        help='regenerate even if an identical complete set exists')
    add_debug_arg(parser)
    return parser.parse_args(argv)


def _report(result: dict) -> None:
    state = 'already present, kept' if result['skipped'] else 'written'
    print(f"[{result['kind']}] {result['root']} ({state}); classes: "
          f"{', '.join(result['classes'])}")
    for split, info in result['splits'].items():
        if result['kind'] == 'det':
            print(f"  {split}: {info['images']} images in {info['img_dir']}, "
                  f"{info['annotations']} annotations in {info['ann_file']}")
        else:
            print(f"  {split}: {info['images']} images in {info['img_dir']}, "
                  f"label maps in {info['ann_dir']}")


def make(args) -> int:
    from rexnet_backbones.data.synthetic import make_coco_detection, make_segmentation
    common = dict(num_train=args.num_train, num_val=args.num_val, img_size=tuple(args.img_size),
                  num_classes=args.num_classes, seed=args.seed, force=args.force)
    if args.kind in ('det', 'all'):
        _report(make_coco_detection(osp.join(args.out, DET_SUBDIR), **common))
    if args.kind in ('seg', 'all'):
        _report(make_segmentation(osp.join(args.out, SEG_SUBDIR), **common))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    from rexnet_backbones.cli import run_cli
    return run_cli(lambda _: make(args), debug=args.debug)


if __name__ == '__main__':
    sys.exit(main())
