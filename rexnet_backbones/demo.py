"""The main job (`make demo`, ``tools/demo.py``): RetinaNet-ReXNet-1.0x on embedded synthetic COCO data.

Paths are relative to the current directory (``data/synthetic``, ``work_dirs/demo`` by default); the
config is the installed ``det/retinanet_rexnet_synthetic.py`` (:func:`~rexnet_backbones.config_file`), so
the demo runs from a wheel install outside any checkout too.

1. generates the synthetic data once (data/synthetic/coco);
2. evaluates the untrained model (the baseline) with the real COCO metric;
3. trains with :func:`rexnet_backbones.engine.train` on CPU (a few minutes);
4. evaluates the trained model with mmdet's CocoMetric (pycocotools) and draws its predictions;
5. prints the metrics and where everything was written.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import sys
import time
from types import SimpleNamespace

from .config_files import config_file
from .data.synthetic import DEFAULT_DATA_ROOT

DEMO_CONFIG = 'det/retinanet_rexnet_synthetic.py'  # short name, see rexnet_backbones.config_files
DEFAULT_WORK_DIR = osp.join('work_dirs', 'demo')
METRICS = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75')


def _cfg(args, **overrides):
    from mmengine.config import Config
    cfg = Config.fromfile(config_file(DEMO_CONFIG))
    cfg.work_dir = args.work_dir
    cfg.merge_from_dict(overrides)
    cfg.test_dataloader.num_workers = 0
    cfg.test_dataloader.persistent_workers = False
    return cfg


def evaluate(args, checkpoint: str | None, tag: str) -> dict:
    """Real COCO evaluation through mmengine's Runner (mmdet's CocoMetric, pycocotools)."""
    from mmengine.runner import Runner
    cfg = _cfg(args)
    cfg.load_from = checkpoint
    cfg.work_dir = osp.join(args.work_dir, tag)
    cfg.default_hooks.visualization = dict(type='DetVisualizationHook', draw=False)
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    # CocoMetric returns no keys when the model predicts no box above the score threshold
    return {k: float(metrics.get(k, 0.0)) for k in METRICS}


def draw_predictions(args, checkpoint: str, out_png: str, num: int = 8, score_thr: float = 0.3) -> None:
    """A grid of val images: ground truth (white, dashed) and predictions (coloured, with scores)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from mmdet.apis import inference_detector, init_detector
    from pycocotools.coco import COCO

    cfg = _cfg(args)
    model = init_detector(cfg, checkpoint, device='cpu')
    data_root = cfg.test_dataloader.dataset.data_root
    coco = COCO(osp.join(data_root, 'annotations/instances_val2017.json'))
    classes = cfg.classes
    colours = ['tab:red', 'tab:green', 'tab:blue', 'tab:orange', 'tab:purple']
    ids = sorted(coco.getImgIds())[:num]
    cols = 4
    fig, axes = plt.subplots((len(ids) + cols - 1) // cols, cols, figsize=(3.2 * cols, 3.4 * ((len(ids) + cols - 1) // cols)))
    for ax, img_id in zip(axes.flat, ids):
        info = coco.loadImgs(img_id)[0]
        path = osp.join(data_root, 'val2017', info['file_name'])
        img = plt.imread(path)
        ax.imshow(img)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img_id)):
            x, y, w, h = ann['bbox']
            ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, ec='white', ls='--', lw=1))
        pred = inference_detector(model, path).pred_instances
        keep = pred.scores >= score_thr
        for box, label, score in zip(pred.bboxes[keep], pred.labels[keep], pred.scores[keep]):
            x1, y1, x2, y2 = box.tolist()
            c = colours[int(label) % len(colours)]
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=c, lw=2))
            ax.text(x1, y1 - 1, f'{classes[int(label)]} {score:.2f}', color=c, fontsize=7, va='bottom')
        ax.set_title(info['file_name'], fontsize=8)
        ax.axis('off')
    for ax in list(axes.flat)[len(ids):]:
        ax.axis('off')
    fig.suptitle(f'RetinaNet-ReXNet-1.0x on synthetic val images (score >= {score_thr}; GT dashed white)')
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def run_demo(data_root: str = DEFAULT_DATA_ROOT, work_dir: str = DEFAULT_WORK_DIR, epochs: int | None = None,
             num_train: int = 256, num_val: int = 48, retrain: bool = False, threads: int = 2) -> int:
    """Run the demo; returns 0 when the trained model beats the untrained one.

    ``threads`` fixes torch's CPU threads, so a rerun on the same machine gives the same numbers.
    """
    import torch
    torch.set_num_threads(threads)
    args = SimpleNamespace(data_root=data_root, work_dir=work_dir, epochs=epochs, num_train=num_train,
                           num_val=num_val, retrain=retrain)
    os.environ['SYNTHETIC_DATA_ROOT'] = args.data_root
    os.makedirs(args.work_dir, exist_ok=True)
    t0 = time.time()
    from mmdet.utils import register_all_modules
    from rexnet_backbones.data.synthetic import make_coco_detection
    register_all_modules()

    print('[demo] 1/4 synthetic data', flush=True)
    make_coco_detection(osp.join(args.data_root, 'coco'), num_train=args.num_train, num_val=args.num_val,
                        img_size=(160, 160), seed=0)

    print('[demo] 2/4 untrained baseline (random init), COCO bbox metric', flush=True)
    untrained = evaluate(args, None, 'untrained')

    epochs = args.epochs or _cfg(args).train_cfg.max_epochs
    final = osp.join(args.work_dir, f'epoch_{epochs}.pth')
    if args.retrain or not osp.isfile(final):
        print(f'[demo] 3/4 training {epochs} epochs on CPU (log: {args.work_dir})', flush=True)
        from .engine import train
        resume = 'auto' if osp.isfile(osp.join(args.work_dir, 'last_checkpoint')) and not args.retrain else None
        # an interrupted demo continues where it stopped
        train(config_file(DEMO_CONFIG), work_dir=args.work_dir, resume=resume,
              cfg_options={'train_cfg.max_epochs': epochs, 'train_cfg.val_interval': epochs,
                           'default_hooks.checkpoint.interval': min(4, epochs)})
    else:
        print(f'[demo] 3/4 found a finished training at {final} (use --retrain to train again)', flush=True)
    train_s = time.time() - t0

    print('[demo] 4/4 trained model: COCO bbox metric and a picture of predictions', flush=True)
    trained = evaluate(args, final, 'trained')
    png = osp.join(args.work_dir, 'predictions.png')
    draw_predictions(args, final, png)

    result = dict(untrained=untrained, trained=trained, checkpoint=final, picture=png,
                  data=osp.join(args.data_root, 'coco'), seconds=round(time.time() - t0, 1))
    with open(osp.join(args.work_dir, 'demo_metrics.json'), 'w') as f:
        json.dump(result, f, indent=2)
    print('\n| model | bbox mAP | mAP@50 | mAP@75 |\n|---|---|---|---|')
    for name, m in (('untrained (random init)', untrained), (f'trained ({epochs} epochs, CPU)', trained)):
        print(f'| {name} | {m[METRICS[0]]:.3f} | {m[METRICS[1]]:.3f} | {m[METRICS[2]]:.3f} |')
    print(f'\ndata:        {result["data"]}\ncheckpoint:  {final}\npredictions: {png}\n'
          f'metrics:     {osp.join(args.work_dir, "demo_metrics.json")}\nlogs:        {args.work_dir}\n'
          f'total time:  {result["seconds"]:.0f} s (up to training: {train_s:.0f} s)')
    if trained[METRICS[0]] <= untrained[METRICS[0]]:
        print('[demo] warning: the trained model is not better than the untrained one', file=sys.stderr)
        return 1
    return 0

