"""Benchmark suites: many backbones x seeds, trained and tested on one matched recipe.

A suite is a Python file that mmengine's ``Config`` reads (``configs/suites/*.py``, short names
``suites/det_synthetic.py``)::

    name = 'det_synthetic'                # folder name: work_dirs/suites/<name>
    task = 'det'                          # 'det' (mmdet) or 'seg' (mmseg)
    seeds = [0, 1, 2]
    primary_metric = 'coco/bbox_mAP'      # optional (default: the task's first metric)
    metrics = ['coco/bbox_mAP', 'coco/bbox_mAP_50']   # higher-is-better keys to report (optional)
    reference = 'regnetx_400mf'           # optional: the model the others are compared with
    input_size = (128, 128)               # (h, w) of the cost measurements (FLOPs, latency)
    data = dict(root='data/suites/det', num_train=128, num_val=64, img_size=(128, 128))  # optional:
                                          # synthetic set generated if missing (make_coco_detection /
                                          # make_segmentation with these arguments)
    models = dict(
        rexnet_100=dict(config='det/retinanet_rexnet_synthetic.py', label='ReXNet-1.0'),
        regnetx_400mf=dict(
            config='det/retinanet_rexnet_synthetic.py', label='RegNetX-400MF',
            backbone=dict(_delete_=True, type='RegNet', arch='regnetx_400mf', out_indices=(0, 1, 2, 3)),
            neck_in_channels=[32, 64, 160, 384]),
    )
    common = {                            # cfg-options (dotted keys, nested dicts, _delete_) for every model
        'model.backbone.init_cfg': None, 'model.backbone.frozen_stages': -1,
        'model.backbone.norm_eval': False, 'train_cfg.max_epochs': 12, ...}
    allow_recipe_differences = False
    pretrain = dict(dir='work_dirs/pretrain/det', epochs=6)   # optional: pretrain, then fine-tune
                                          # (:mod:`.pretrain`: each backbone first trained as a classifier
                                          # of the generated set under one recipe, saved, and loaded by
                                          # model.backbone.init_cfg=dict(type='Pretrained', checkpoint=...))

A model is a config (a file, one of ours by short name, ``mmdet::``/``mmseg::``), optionally with
``backbone`` (merged into ``model.backbone``; ``_delete_=True`` replaces it), ``neck_in_channels``,
``label``, ``family`` and ``options`` (further cfg-options of this model only). After ``common`` is
applied, everything but ``model.backbone`` and ``model.neck.in_channels`` must be equal across the
models (the *matched recipe*); ``run`` refuses a suite where it is not, unless
``allow_recipe_differences=True`` (the report then flags the differing keys). A suite run also turns
off validation during training (the job's test measures) and adds ``SuiteTrainHook``.

Modules: :mod:`.definition` (load, validate, resolve, recipe, hash), :mod:`.jobs` (jobs, shards,
status), :mod:`.job` (train/test stages, also under torchrun/srun), :mod:`.costs`, :mod:`.hooks`,
:mod:`.run` (:func:`run_suite`), :mod:`.pretrain`; :mod:`.report` (:func:`write_report`: statistics, tables, plot; with :mod:`.report_gather` and
:mod:`.report_render`) reads the files they write:

* ``<work_dir>/suite.json``: name, file, hash, task, primary_metric, metrics, seeds, models (config,
  label, family, backbone_type), reference, allow_recipe_differences, recipe (flattened, common part);
* ``<work_dir>/jobs/<model>/seed<k>/result.json``: suite, suite_hash, model, seed, status
  ('done'/'failed'), error, metrics, costs (params, flops, activations, latency_ms, input_size),
  train (time_s, peak_memory_mb, iterations, final_loss), recipe, versions, host, threads, finished_at.
"""
from .definition import Suite, SuiteModel, check_recipes, load_suite
from .jobs import Job, job_status, make_jobs, parse_shard, shard
from .report import Report, build_report, write_report
from .run import run_suite

__all__ = ['Suite', 'SuiteModel', 'load_suite', 'check_recipes', 'Job', 'make_jobs', 'parse_shard', 'shard',
           'job_status', 'run_suite', 'Report', 'build_report', 'write_report']
