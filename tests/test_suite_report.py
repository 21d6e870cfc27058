"""The suite report over hand-made work dirs that follow the file contract of ``tools/suite.py run``
(suite.json + jobs/<model>/seed<k>/result.json): values, verdicts, references, marking, merging."""
import json
import math
import os

import pytest

from rexnet_backbones.errors import InputNotFoundError, InvalidInputError
from rexnet_backbones.suite.report import build_report, write_report

SEEDS = [0, 1, 2]
PRIMARY = 'coco/bbox_mAP'
RECIPE = {'model.type': 'RetinaNet', 'train_cfg.type': 'IterBasedTrainLoop', 'train_cfg.max_iters': 300,
          'optim_wrapper.optimizer.type': 'SGD', 'optim_wrapper.optimizer.lr': 0.01,
          'train_dataloader.batch_size': 4, 'train_dataloader.dataset.data_root': 'data/coco',
          'param_scheduler': [{'type': 'LinearLR'}, {'type': 'MultiStepLR'}]}
# key: (label, family, GFLOPs, mAP per seed)
MODELS = {
    'rexnet': ('ReXNet-1.0', 'ReXNet', 0.6, [0.60, 0.62, 0.64]),
    'regx400': ('RegNetX-400MF', 'RegNet', 0.4, [0.40, 0.42, 0.41]),
    'regx800': ('RegNetX-800MF', 'RegNet', 0.8, [0.50, 0.51, 0.52]),
    'resnet18': ('ResNet-18', 'ResNet', 1.8, [0.49, 0.53, 0.51]),
    'mbv2': ('MobileNetV2', 'MobileNetV2', 0.3, [0.30, 0.31, 0.29]),
}


def write_suite(work_dir, models=MODELS, reference=None, suite_hash='h1', allow=False):
    os.makedirs(work_dir, exist_ok=True)
    suite = dict(name='det_test', file='suites/det_test.py', hash=suite_hash, task='det', primary_metric=PRIMARY,
                 metrics=[PRIMARY, 'coco/bbox_mAP_50'], seeds=SEEDS, reference=reference,
                 models={k: dict(config=f'configs/{k}.py', label=v[0], family=v[1], backbone_type=v[1])
                         for k, v in models.items()},
                 allow_recipe_differences=allow, recipe=RECIPE, input_size=[256, 256])
    with open(os.path.join(work_dir, 'suite.json'), 'w') as f:
        json.dump(suite, f)


def write_result(work_dir, model, seed, status='done', suite_hash='h1', recipe=None, finished='2026-11-30T12:00',
                 error=None):
    label, family, gflops, maps = MODELS[model]
    job_dir = os.path.join(work_dir, 'jobs', model, f'seed{seed}')
    os.makedirs(job_dir, exist_ok=True)
    done = status == 'done'
    result = dict(suite='det_test', suite_hash=suite_hash, model=model, seed=seed, status=status,
                  error=error if not done else None,
                  metrics={PRIMARY: maps[seed], 'coco/bbox_mAP_50': maps[seed] + 0.2} if done else {},
                  costs=dict(params=int(gflops * 5e6), flops=int(gflops * 1e9), activations=int(gflops * 4e6),
                             latency_ms=10 * gflops, input_size=[256, 256]),
                  train=dict(time_s=60.0 * (seed + 1), peak_memory_mb=500.0 + seed, iterations=300,
                             final_loss=0.5),
                  recipe=RECIPE if recipe is None else recipe, versions={'torch': '2.4'}, host='box', threads=2,
                  finished_at=finished)
    with open(os.path.join(job_dir, 'result.json'), 'w') as f:
        json.dump(result, f)


def full_dir(work_dir, **suite_kw):
    write_suite(work_dir, **suite_kw)
    for model in MODELS:
        for seed in SEEDS:
            write_result(work_dir, model, seed)
    return work_dir


def test_table_values_references_and_verdicts(tmp_path):
    report = write_report(full_dir(str(tmp_path / 'w')))
    rex = report.model('rexnet')
    assert rex.seeds_done == SEEDS and rex.complete and rex.problems == {}
    assert rex.metrics[PRIMARY].mean == pytest.approx(0.62) and rex.metrics[PRIMARY].std == pytest.approx(0.02)
    assert rex.metrics['coco/bbox_mAP_50'].mean == pytest.approx(0.82)
    assert rex.flops == 600_000_000 and rex.params == 3_000_000 and rex.latency_ms == pytest.approx(6.0)
    assert rex.train_time_s.mean == pytest.approx(120.0) and rex.peak_memory_mb.mean == pytest.approx(501.0)
    # references by FLOPs ratio: 0.6 is closer to 0.8 (x1.33) than to 0.4 (x1.5); 1.8 -> 0.8; 0.3 -> 0.4
    refs = {m.key: m.reference for m in report.models}
    assert refs == {'rexnet': 'regx800', 'regx400': None, 'regx800': None, 'resnet18': 'regx800', 'mbv2': 'regx400'}
    assert report.model('regx800').is_reference and report.model('regx400').is_reference
    verdicts = {m.key: m.comparison.verdict for m in report.models if m.comparison}
    assert verdicts == {'rexnet': 'better', 'resnet18': 'inconclusive', 'mbv2': 'worse'}
    c = rex.comparison
    assert c.mean_diff == pytest.approx(0.11) and c.n_pairs == 3
    assert all(math.isnan(v) for v in c.ci)  # 3 seeds: no percentile bootstrap (it would be [min, max])
    half = 4.302652730 * 0.01 / math.sqrt(3)  # differences 0.10, 0.11, 0.12: sd 0.01, t(0.975, 2)
    assert c.t_ci == (pytest.approx(0.11 - half), pytest.approx(0.11 + half))
    # three comparisons in the Holm family; rexnet's p is the smallest or tied, so at most 3 x p
    assert c.family_size == 3 and c.p_value < c.p_adjusted <= 3 * c.p_value + 1e-12 and c.p_adjusted < 0.05
    assert c.mdd > 0 and math.isfinite(c.mdd)
    assert report.verdicts[0].startswith('ReXNet-1.0 is better than RegNetX-800MF: coco/bbox_mAP +0.110 over 3 '
                                         'paired seeds (95% t interval [+0.085, +0.135]; paired t p 0.003')
    assert 'over 3 comparisons' in report.verdicts[0] and 'detectable with 80% power' in report.verdicts[0]

    md = open(report.files['md']).read()
    assert '| ReXNet-1.0 | ReXNet | 3/3 | 0.620 ± 0.020 | 0.820 ± 0.020 | 3.00 | 0.60 | 2.40 | 6.0 |' in md
    assert '+0.110 [+0.085, +0.135] vs RegNetX-800MF: better (Holm p ' in md
    assert 'inconclusive' in md and 'no difference' not in md.replace('not "no difference"', '')
    assert '| RegNetX-800MF | RegNet | 3/3 | 0.510 ± 0.010 |' in md and '| reference |' in md
    assert 'model RetinaNet' in md and 'lr 0.01' in md and 'input size 256x256' in md
    assert 'lr schedule LinearLR + MultiStepLR' in md and 'Recipe keys that differ' not in md
    data = json.load(open(report.files['json']))
    assert data['models'][0]['comparison']['verdict'] == 'better'
    assert data['recipe']['batch size'] == 4 and data['suite']['primary_metric'] == PRIMARY
    with open(report.files['png'], 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_suite_reference_overrides_flops(tmp_path):
    report = build_report(full_dir(str(tmp_path / 'w'), reference='regx400'))
    assert {m.key: m.reference for m in report.models} == {
        'rexnet': 'regx400', 'regx400': None, 'regx800': 'regx400', 'resnet18': 'regx400', 'mbv2': 'regx400'}
    assert report.model('regx400').is_reference and not report.model('regx800').is_reference
    assert 'suite\'s reference' in report.verdicts[0]


def test_failed_missing_incomplete_unreadable_are_marked(tmp_path):
    work = str(tmp_path / 'w')
    write_suite(work)
    for model in MODELS:
        for seed in SEEDS:
            if (model, seed) == ('rexnet', 1):
                write_result(work, model, seed, status='failed', error='loss is NaN at iteration 40')
            elif (model, seed) in (('rexnet', 2), ('regx800', 0)):
                continue  # missing
            else:
                write_result(work, model, seed)
    os.makedirs(os.path.join(work, 'jobs', 'mbv2', 'seed2'), exist_ok=True)
    os.remove(os.path.join(work, 'jobs', 'mbv2', 'seed2', 'result.json'))  # killed: folder, no result
    with open(os.path.join(work, 'jobs', 'resnet18', 'seed0', 'result.json'), 'w') as f:
        f.write('{"suite": "det_test", "suite_h')  # half written
    report = write_report(work)
    rex = report.model('rexnet')
    assert rex.seeds_done == [0] and not rex.complete
    assert rex.problems == {1: 'failed: loss is NaN at iteration 40', 2: 'missing'}
    assert rex.metrics[PRIMARY].n == 1 and rex.metrics[PRIMARY].mean == pytest.approx(0.60)
    assert math.isnan(rex.metrics[PRIMARY].std)
    assert rex.flops == 600_000_000  # the costs of the failed job still count
    assert report.model('mbv2').problems == {2: 'incomplete'}
    assert report.model('resnet18').problems[0].startswith('unreadable: result.json does not parse')
    # rexnet has seed 0 only, regx800 seeds 1 and 2: no pair
    assert rex.comparison.n_pairs == 0
    assert report.verdicts[0] == ('ReXNet-1.0 vs RegNetX-800MF (the RegNet model of closest FLOPs): not compared, '
                                  'no seed finished for both.')
    resnet = report.model('resnet18').comparison
    assert resnet.seeds == [1, 2] and 'only 2 paired seeds' in resnet.note  # resnet18 seed 0 unreadable
    assert report.verdicts[1].startswith('ResNet-18 vs RegNetX-800MF: inconclusive: ')
    assert report.verdicts[1].endswith('Note: only 2 paired seeds: the intervals are very coarse.')
    md = open(report.files['md']).read()
    assert '| ReXNet-1.0 | ReXNet | 1/3 ⚠ | 0.600 |' in md
    assert 'seed 1 failed; seed 2 missing |' in md
    assert '- ReXNet-1.0 seed 1: failed: loss is NaN at iteration 40' in md
    assert '- MobileNetV2 seed 2: incomplete' in md


def test_partial_result_json_lacking_keys_is_marked(tmp_path):
    work = full_dir(str(tmp_path / 'w'))
    path = os.path.join(work, 'jobs', 'mbv2', 'seed0', 'result.json')
    json.dump({'suite_hash': 'h1', 'model': 'mbv2'}, open(path, 'w'))
    report = build_report(work)
    assert report.model('mbv2').problems == {0: 'unreadable: result.json lacks seed, status, metrics'}
    assert report.model('mbv2').seeds_done == [1, 2]


def test_hash_mismatch_names_the_jobs(tmp_path):
    work = full_dir(str(tmp_path / 'w'))
    write_result(work, 'rexnet', 1, suite_hash='h2')
    write_result(work, 'mbv2', 0, suite_hash='h2')
    with pytest.raises(InvalidInputError, match=r'2 result\(s\) .* another suite definition .*hash h1\): '
                                                r'mbv2/seed0, rexnet/seed1;') as e:
        build_report(work)
    assert '\n' not in str(e.value)


def test_empty_or_missing_work_dir(tmp_path):
    with pytest.raises(InputNotFoundError, match=r'no suite.json in .*: run `python tools/suite.py run SUITE'):
        write_report(str(tmp_path))
    with pytest.raises(InputNotFoundError, match='does not exist'):
        write_report(str(tmp_path / 'nope'))
    (tmp_path / 'suite.json').write_text('{"name": ')
    with pytest.raises(InvalidInputError, match='not a readable suite.json'):
        write_report(str(tmp_path))


def test_no_results_yet_still_reports(tmp_path):
    work = str(tmp_path / 'w')
    write_suite(work)
    report = write_report(work)
    assert all(m.seeds_done == [] and set(m.problems.values()) == {'missing'} for m in report.models)
    assert report.verdicts == []
    assert 'no pair compared' in open(report.files['md']).read()
    assert os.path.getsize(report.files['png']) > 0


def test_report_names_the_work_dir_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # results.json is committed with the docs: no path of the machine it ran on
    report = write_report(full_dir(os.path.join('work_dirs', 'suites', 'det_test')))
    written = json.load(open(report.files['json']))
    assert written['work_dir'] == os.path.join('work_dirs', 'suites', 'det_test')
    assert str(tmp_path) not in open(report.files['json']).read() + open(report.files['md']).read()


def test_two_shards_merge_to_the_full_report(tmp_path):
    full = write_report(full_dir(str(tmp_path / 'full')), out_dir=str(tmp_path / 'out_full'))
    merged_dir = str(tmp_path / 'shards')
    write_suite(merged_dir)
    jobs = [(m, s) for m in MODELS for s in SEEDS]
    for shard in (1, 0):  # shard 2/2 finishes first, at another time
        for j, (model, seed) in enumerate(jobs):
            if j % 2 == shard:
                write_result(merged_dir, model, seed, finished=f'2026-11-30T1{shard}:00')
    merged = write_report(merged_dir)
    strip = lambda d: {k: v for k, v in d.items() if k not in ('work_dir', 'files')}  # noqa: E731
    assert strip(merged.to_json()) == strip(full.to_json())
    assert open(merged.files['md']).read() == open(full.files['md']).read()
    assert os.path.isfile(os.path.join(merged_dir, 'results.png'))


def test_recipe_differences_are_flagged(tmp_path):
    work = full_dir(str(tmp_path / 'w'), allow=True)
    for seed in SEEDS:
        write_result(work, 'mbv2', seed, recipe={**RECIPE, 'optim_wrapper.optimizer.lr': 0.02})
    report = write_report(work)
    assert [d.key for d in report.recipe_differences] == ['optim_wrapper.optimizer.lr']
    assert report.recipe_differences[0].values['mbv2'] == '0.02'
    md = open(report.files['md']).read()
    assert '**Recipe keys that differ between models** (allowed by the suite)' in md
    assert '- `optim_wrapper.optimizer.lr`: rexnet=0.01, regx400=0.01, regx800=0.01, resnet18=0.01, mbv2=0.02' in md


def test_done_without_primary_metric_counts_as_failed_and_short_metrics_show_n(tmp_path):
    work = full_dir(str(tmp_path / 'w'))
    path = os.path.join(work, 'jobs', 'regx400', 'seed1', 'result.json')
    result = json.load(open(path))
    result['metrics'] = {PRIMARY: float('nan'), 'coco/bbox_mAP_50': 0.6}  # json writes NaN
    json.dump(result, open(path, 'w'))
    path = os.path.join(work, 'jobs', 'rexnet', 'seed2', 'result.json')
    result = json.load(open(path))
    del result['metrics']['coco/bbox_mAP_50']
    json.dump(result, open(path, 'w'))
    report = write_report(work, x_axis='activations')
    assert report.model('regx400').problems == {1: 'failed: done, but no finite coco/bbox_mAP in its metrics'}
    assert report.model('regx400').seeds_done == [0, 2]
    assert report.model('rexnet').metrics['coco/bbox_mAP_50'].n == 2
    md = open(report.files['md']).read()
    assert '| ReXNet-1.0 | ReXNet | 3/3 | 0.620 ± 0.020 | 0.810 ± 0.014 (n=2) |' in md
    assert '| RegNetX-400MF | RegNet | 2/3 ⚠ | 0.405 ± 0.007 |' in md
    # MobileNetV2 on seeds 0 and 2 only: differences -0.10, -0.12; the t interval with 1 degree of freedom
    # includes 0, so the verdict is inconclusive
    assert '-0.110 [-0.237, +0.017] vs RegNetX-400MF (2 seeds): inconclusive' in md
    assert 't interval [-0.237, +0.017]' in md
    with pytest.raises(InvalidInputError, match='x_axis must be one of flops, activations'):
        write_report(work, x_axis='params')


def test_unknown_suite_reference_is_an_error(tmp_path):
    work = full_dir(str(tmp_path / 'w'), reference='regx1600')
    with pytest.raises(InvalidInputError, match=r"names reference 'regx1600', which is none of its models"):
        build_report(work)


def test_reanalyse_written_report_matches_the_report(tmp_path):
    from rexnet_backbones.suite.report import reanalyse
    report = write_report(full_dir(str(tmp_path / 'w')))
    md, rows = reanalyse([report.files['json'], report.files['json']])
    by_model = {r['model']: r for r in rows[:3]}
    rex = by_model['ReXNet-1.0']
    assert rex['diff'].t_ci == pytest.approx(report.model('rexnet').comparison.t_ci)
    assert rex['p_holm_report'] == pytest.approx(report.model('rexnet').comparison.p_adjusted)
    assert rex['verdict_report'] == 'better' and by_model['ResNet-18']['verdict_report'] == 'inconclusive'
    assert rex['p_holm_all'] >= rex['p_holm_report']  # six comparisons in the second family, three in the first
    assert md.count('| det_test |') == 6 + 10  # six comparisons, five models' means per file
    assert '| det_test | ReXNet-1.0 | 3 | 0.600, 0.620, 0.640 | 0.620 ± 0.020 |' in md
    with pytest.raises(InputNotFoundError, match='no report'):
        reanalyse([str(tmp_path / 'nope.json')])
