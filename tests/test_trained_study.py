"""The trained design-space study: a tiny two-space study, its shards and resume, the FLOP-budget
error, diverged models, mixed-settings merges, bad --data folders, and the design spaces.

The tool's errors run in this process (``run_tool_in_process``); its real command line: tests/test_errors.py."""
from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from _helpers_tools import run_tool_in_process

from rexnet_backbones.analysis.spaces import (approx_macs, build_space_model, pycls_regnet_params, sample_model,
                                              stage_layout)
from rexnet_backbones.errors import FlopBudgetError
from rexnet_backbones.analysis.trained_report import merge_records, report_markdown, write_report
from rexnet_backbones.analysis.trained_stats import budget_table, noise_markdown, noise_pairs, noise_table
from rexnet_backbones.analysis.trained_study import (StudySettings, read_records, run_study, settings_hash,
                                                     shard_jobs, study_jobs, train_model)
from rexnet_backbones.errors import ToolError
from rexnet_backbones.errors import InvalidInputError
from rexnet_backbones.data.classification import load_image_folder, make_shape_classification

TINY = StudySettings(spaces=('regnetx', 'ir_linear'), num_models=3, flops=(0.3e6, 8e6), input_size=16, epochs=1,
                     batch_size=16, num_train=48, num_val=24, rank_images=16, max_rows=128, max_tries=50)
VOLATILE = ('seconds', 'train_seconds', 'cpu_seconds')


def _stable(records):
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in records]


@pytest.fixture(scope='module')
def full_run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp('trained') / 'all.jsonl'
    run_study(TINY, str(out), progress=False)
    return out


def test_tiny_study_records_every_model(full_run):
    records = read_records(str(full_run))
    assert [(r['space'], r['index']) for r in records] == [(s, i) for i in range(3) for s in ('regnetx', 'ir_linear')]
    for r in records:
        assert r['settings_hash'] == settings_hash(TINY) and r['status'] == 'ok'
        assert 0.3e6 <= r['flops'] <= 8e6 and r['acts'] > 0 and r['num_params'] > 0
        assert 0 <= r['error'] <= 100
        for phase in ('init', 'trained'):
            for centring in ('centred', 'uncentred'):
                st = r['rank'][phase][centring]['nuclear']
                assert 0 < st['min'] <= st['mean'] <= 1
        # the width-free statistics, per kind of layer: ratio and ratio to white noise, both centrings
        kinds = r['rank']['init']['by_kind']
        assert sum(k['n'] for k in kinds.values()) == r['rank']['init']['num_layers']
        for kind in kinds.values():
            for centring in ('centred', 'uncentred'):
                for norm in ('ratio', 'null'):
                    st = kind[centring][norm]['nuclear']
                    assert 0 < st['min'] <= st['mean']
    assert 'expand' in records[1]['rank']['init']['by_kind']  # ir_linear: every block has one
    md = report_markdown(records)
    assert '| regnetx | 3 | 0 |' in md and '| trained | centred | all | 6 |' in md


def test_shards_and_resume_give_the_full_run(full_run, tmp_path):
    torch.set_num_threads(1)
    jobs = study_jobs(TINY)
    halves = [shard_jobs(jobs, (i, 2)) for i in (1, 2)]
    assert sorted(halves[0] + halves[1]) == sorted(jobs) and not set(halves[0]) & set(halves[1])
    a, b = tmp_path / 'a.jsonl', tmp_path / 'b.jsonl'
    # shard 1 is "killed": one model done, then a write cut in the middle of a line
    assert len(run_study(TINY, str(a), (1, 2), limit=1, progress=False)) == 1
    with open(a, 'a') as f:
        f.write('{"settings_hash": "cut')
    resumed = run_study(TINY, str(a), (1, 2), progress=False)
    assert [(r['space'], r['index']) for r in resumed] == halves[0][1:]  # the finished model is not retrained
    assert run_study(TINY, str(a), (1, 2), progress=False) == []
    run_study(TINY, str(b), (2, 2), progress=False)
    assert _stable(merge_records([str(a), str(b)])) == _stable(merge_records([str(full_run)]))


def test_mixed_settings_are_refused(full_run, tmp_path):
    other = replace(TINY, epochs=2)
    line = dict(read_records(str(full_run))[0], settings_hash=settings_hash(other), index=7)
    mixed = tmp_path / 'other.jsonl'
    mixed.write_text(json.dumps(line) + '\n')
    with pytest.raises(ToolError, match='different study settings'):
        merge_records([str(full_run), str(mixed)])
    with pytest.raises(ToolError, match='other study settings'):
        run_study(TINY, str(mixed), progress=False)
    proc = run_tool_in_process('rank_study.py', ['trained-report', '--inputs', full_run, mixed, '--out-dir',
                                                 tmp_path / 'rep'], '', tmp_path)
    assert proc.returncode == 2 and proc.stderr.count('\n') == 1 and 'different study settings' in proc.stderr


def test_report_files(full_run, tmp_path):
    md, names = write_report([str(full_run)], str(tmp_path / 'rep'))
    assert 'median top-1 error' in md and 'partial, depth+w0+wa+wm' in md
    assert '| ir_linear - ir_stage |' not in md  # no ir_stage in this study
    data = json.load(open(names[4]))
    assert {r['space'] for r in data['layer_mix']} == {'regnetx', 'ir_linear'}
    assert data['width_free'] == []  # 3 models per space: too few for a partial (test_width_free_partials_...)
    assert '**Width-free rank against error**' not in md
    mix = {r['space']: r for r in data['layer_mix']}
    assert 0 < mix['regnetx']['projection_share'] <= 1 and mix['ir_linear']['projection_share'] is None
    assert all(Path(n).stat().st_size > 0 for n in names)
    assert Path(names[2]).stat().st_size > 10_000  # the EDF figure has curves


def test_width_free_partials_on_enough_models(full_run):
    from rexnet_backbones.analysis.trained_stats import partial_rank_table, rank_value
    base = [r for r in read_records(str(full_run)) if r['space'] == 'ir_linear']
    rng = random.Random(0)
    # nine copies of the three models with other errors and depths: enough rows for the table
    many = [dict(r, index=10 * k + r['index'], error=rng.uniform(20, 80), arch=dict(r['arch'], depth=12 + k))
            for k in range(3) for r in base for _ in range(1)] * 3
    rows = partial_rank_table(many, layers='expand', norm='null', n_boot=50)
    assert {(r['phase'], r['centring']) for r in rows} == {(p, c) for p in ('init', 'trained')
                                                          for c in ('centred', 'uncentred')}
    assert all(r['n'] == 27 and r['layers'] == 'expand' and -1 <= r['none']['rho'] <= 1 for r in rows)
    assert rank_value(base[0], 'init', 'centred', 'nuclear', layers='expand', norm='null') > 0
    with pytest.raises(KeyError, match='predate'):
        rank_value(dict(base[0], rank=dict(init={'centred': {}})), 'init', 'centred', 'nuclear', layers='block')


def test_paired_table_compares_the_same_networks(full_run):
    base = [r for r in read_records(str(full_run)) if r['space'] == 'ir_linear']
    silu = [dict(r, space='ir_linear_silu', error=r['error'] + 1.0 + 0.1 * r['index']) for r in base]
    md = report_markdown(base + silu)
    assert '| ir_linear_silu - ir_linear | 3 | +1.10 |' in md and '| worse |' in md


def test_flop_budget_error_names_the_range():
    with pytest.raises(FlopBudgetError, match=r'none of 3 sampled models has 0\.00-0\.00 MFLOPs .*reached'):
        sample_model('regnetx', 0, (1.0, 2.0), (16, 16), max_tries=3)


def test_diverged_model_is_recorded(tmp_path):
    torch.set_num_threads(1)
    s = replace(TINY, spaces=('regnetx',), num_models=1, lr=1e12)
    out = tmp_path / 'div.jsonl'
    run_study(s, str(out), progress=False)
    (rec,) = read_records(str(out))
    assert rec['status'] == 'diverged' and rec['error'] is None and 'trained' not in rec['rank']
    assert '| regnetx | 1 | 1 |' in report_markdown([rec])


def test_train_model_stops_at_non_finite_loss():
    model = build_space_model('regnetx', dict(depth=12, w0=8, wa=8.0, wm=2.5, group_size=8), 10)
    x, y = make_shape_classification(16, size=16)
    r = train_model(model, dict(train=(x.float(), y)), 1, 8, float('1e30'), 0.0, 0)
    assert r['status'] == 'diverged'


def test_bad_data_folder_is_one_error_line(tmp_path):
    (tmp_path / 'empty').mkdir()
    proc = run_tool_in_process('rank_study.py', ['trained', '--data', tmp_path / 'empty', '--num-models', '1',
                                                 '--out', tmp_path / 'x.jsonl'], '', tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith('error: --data') and proc.stderr.count('\n') == 1
    assert 'train/ and val/' in proc.stderr


def test_image_folder_loads_and_names_an_unreadable_file(tmp_path):
    from PIL import Image
    x, _ = make_shape_classification(4, size=20)
    for k, (split, cls) in enumerate([('train', 'a'), ('train', 'b'), ('val', 'a'), ('val', 'b')]):
        (tmp_path / split / cls).mkdir(parents=True)
        Image.fromarray(x[k].permute(1, 2, 0).numpy()).save(tmp_path / split / cls / f'{k}.png')
    (xt, yt), (xv, yv), classes = load_image_folder(str(tmp_path), size=16)
    assert classes == ['a', 'b'] and xt.shape == (2, 3, 16, 16) and xt.dtype == torch.uint8
    assert yt.tolist() == [0, 1] and yv.tolist() == [0, 1]
    (tmp_path / 'val' / 'b' / 'broken.png').write_bytes(b'not an image')
    with pytest.raises(InvalidInputError, match='cannot read image .*broken.png'):
        load_image_folder(str(tmp_path), size=16)


def test_pycls_sampler_ranges_and_pairs():
    rng = random.Random(0)
    draws = [pycls_regnet_params(rng) for _ in range(200)]
    assert all(12 <= p['depth'] <= 28 and 8 <= p['w0'] <= 256 and p['w0'] % 8 == 0 for p in draws)
    assert all(8 <= p['wa'] <= 256 and 2 <= p['wm'] <= 3 and 8 <= p['group_size'] <= 128 for p in draws)
    assert all(stage_layout(p['depth'], p['w0'], p['wa'], p['wm'])[2] == 4 for p in draws)
    # the SiLU space reuses the very ReLU6 networks
    a = sample_model('ir_linear', 1, (0.3e6, 8e6), (16, 16), max_tries=50)
    b = sample_model('ir_linear_silu', 1, (0.3e6, 8e6), (16, 16), max_tries=50)
    assert a == b


def test_linear_growth_widens_every_block():
    p = dict(depth=12, w0=16, wa=12.0, wm=2.0)  # widths 16..148; stages 16, 32, 64, 128
    stage = build_space_model('ir_stage', p, 10)
    linear = build_space_model('ir_linear', p, 10)
    widen = lambda m: sum(b.out_channels > b.in_channels for b in m.blocks)  # noqa: E731
    # after the first block (stem 32 -> 16): linear growth widens every block, stage-wise only 3
    assert widen(linear) == 11 and widen(stage) == 3
    assert [b.out_channels for b in stage.blocks][-1] == 128 and linear.blocks[-1].out_channels == 144
    acts = [type(b.conv_exp.bn.act).__name__ for b in build_space_model('ir_linear_silu', p, 10).blocks]
    assert set(acts) == {'SiLU'}
    assert approx_macs('ir_linear', p, (32, 32)) > 0


def test_stem_stride_and_zero_init_last():
    p = dict(depth=12, w0=16, wa=12.0, wm=2.0)
    x = torch.zeros(1, 3, 32, 32)
    for space, params in (('regnetx', dict(p, group_size=8)), ('regnetx_noquant', dict(p, group_size=8)),
                          ('ir_linear', p)):
        for stride, side in ((1, 32), (2, 16)):
            assert build_space_model(space, params, 10, stride).stem(x).shape[-1] == side
    reg = build_space_model('regnetx', dict(p, group_size=8), 10, 1, zero_init_last=True)
    assert all(not b.conv3.bn.weight.any() for s in (reg.s1, reg.s2, reg.s3, reg.s4) for b in s.children())
    ir = build_space_model('ir_linear', p, 10, 1, zero_init_last=True)
    with_sc = [b for b in ir.blocks if b.use_shortcut]
    assert with_sc and all(not b.conv_pwl.bn.weight[:b.in_channels].any() and
                           bool((b.conv_pwl.bn.weight[b.in_channels:] == 1).all()) for b in with_sc)
    assert all(bool((b.conv_pwl.bn.weight == 1).all()) for b in ir.blocks if not b.use_shortcut)
    assert bool((build_space_model('ir_linear', p, 10).blocks[1].conv_pwl.bn.weight == 1).all())


def test_bad_optimizer_and_stem_stride_are_refused():
    with pytest.raises(InvalidInputError, match='--optimizer must be one of adamw, sgd'):
        replace(TINY, optimizer='adam').check()
    with pytest.raises(InvalidInputError, match='--stem-stride must be 1 or 2'):
        replace(TINY, stem_stride=4).check()


def test_study_data_goes_to_the_training_device():
    """``--device cuda`` trains where the data is: every tensor of the loaded set is moved there
    (before this, the data stayed on the CPU and a CUDA run failed at its first convolution)."""
    from rexnet_backbones.analysis.trained_study import _on_device, load_data
    s = StudySettings(num_train=8, num_val=4)
    data = _on_device(load_data(s), 'meta')
    tensors = [*data['train'], *data['val']]
    assert len(tensors) == 4 and all(t.device.type == 'meta' for t in tensors)
    assert data['classes'] == load_data(s)['classes']


def test_matched_designs_share_every_parameter():
    budget, size = (0.3e6, 8e6), (16, 16)
    for index in range(2):
        draws = {sp: sample_model(sp, index, budget, size, max_tries=200) for sp in
                 ('regnetx', 'regnetx_noquant', 'ir_stage', 'ir_linear', 'ir_stage_silu', 'ir_linear_silu')}
        assert draws['regnetx']['params'] == draws['regnetx_noquant']['params']
        ir = [draws[sp]['params'] for sp in ('ir_stage', 'ir_linear', 'ir_stage_silu', 'ir_linear_silu')]
        assert all(p == ir[0] for p in ir) and 'group_size' not in ir[0]
        assert all(budget[0] <= d['flops'] <= budget[1] for d in draws.values())
    # the older sampler: one stream per space, nothing shared between regnetx and regnetx_noquant
    old = [sample_model(sp, 0, budget, size, max_tries=200, design='independent')['params']
           for sp in ('regnetx', 'regnetx_noquant')]
    assert old[0] != old[1]
    with pytest.raises(InvalidInputError, match='unknown design'):
        sample_model('regnetx', 0, budget, size, design='paired')


def test_noquant_uses_partial_identity_shortcuts_where_channels_grow():
    from rexnet_backbones.analysis.spaces import PartialShortcutBottleneck
    p = dict(depth=12, w0=16, wa=12.0, wm=2.0, group_size=8)
    model = build_space_model('regnetx_noquant', p, 10, 1)
    blocks = list(model.blocks)
    stride2 = [b for b in blocks if b.conv2.conv.stride[0] == 2]
    assert len(stride2) == 4 and all(not b.partial and b.downsample is not None for b in stride2)
    partial = [b for b in blocks if b.partial]
    assert partial and all(b.downsample is None for b in partial)
    # projections (1x1 shortcut convs) only at the 4 stride-2 blocks, as in regnetx
    projections = [b for b in blocks if isinstance(b.downsample, torch.nn.Module)
                   and any(isinstance(m, torch.nn.Conv2d) for m in b.downsample.modules())]
    assert len(projections) == 4
    old = build_space_model('regnetx_noquant', p, 10, 1, design='independent')
    old_projections = [b for s in (old.s1, old.s2, old.s3, old.s4) for b in s.children()
                       if any(isinstance(m, torch.nn.Conv2d) for m in b.downsample.modules())]
    assert len(old_projections) > 4
    # the partial shortcut: input added to the first in_channels outputs, the rest is the branch alone
    block = PartialShortcutBottleneck(16, 24, 1, group_size=8).eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        branch = block.conv3(block.conv2(block.conv1(x)))
        out = block(x)
    assert torch.allclose(out, torch.relu(torch.cat([branch[:, :16] + x, branch[:, 16:]], 1)), atol=1e-6)


def test_sweep_noise_plan_and_their_reports(full_run, tmp_path):
    torch.set_num_threads(1)
    tiny = ['--spaces', 'regnetx', 'ir_linear', '--num-models', '3', '--flops', '0.3e6', '8e6', '--input-size', '16',
            '--batch-size', '16', '--num-train', '48', '--num-val', '24', '--rank-images', '16', '--max-rows', '128',
            '--max-tries', '50']
    sweep = run_tool_in_process('rank_study.py', ['trained-sweep', *tiny, '--spaces', 'regnetx', '--lrs', '1e-3', '1e-2',
                                                  '--sweep-models', '1', '--out', tmp_path / 'sw'], '', tmp_path)
    assert sweep.returncode == 0, sweep.stderr
    files = sorted(str(p) for p in tmp_path.glob('sw.lr*.jsonl'))
    assert [Path(f).name for f in files] == ['sw.lr0.001.jsonl', 'sw.lr0.01.jsonl']
    assert [len(read_records(f)) for f in files] == [1, 1]
    assert read_records(files[0])[0]['arch'] == read_records(files[1])[0]['arch']  # the same model at both rates
    rep = run_tool_in_process('rank_study.py', ['trained-runs-report', 'sweep', '--inputs', *files], '', tmp_path)
    assert rep.returncode == 0 and '| regnetx |' in rep.stdout and 'lr 0.01' in rep.stdout
    noise = run_tool_in_process('rank_study.py', ['trained-noise', *tiny, '--noise-models', '2', '--noise-seeds', '1',
                                                  '--out', tmp_path / 'nz'], '', tmp_path)
    assert noise.returncode == 0, noise.stderr
    retrained = read_records(str(tmp_path / 'nz.seed1.jsonl'))
    main = {(r['space'], r['index']): r for r in read_records(str(full_run))}
    assert len(retrained) == 4
    for r in retrained:  # the same networks as the main run, trained from other initial weights
        assert r['arch'] == main[(r['space'], r['index'])]['arch'] and r['settings']['train_seed'] == 1
        assert r['rank']['init'] != main[(r['space'], r['index'])]['rank']['init']
    rep = run_tool_in_process('rank_study.py', ['trained-runs-report', 'noise', '--inputs', full_run,
                                                tmp_path / 'nz.seed1.jsonl'], '', tmp_path)
    assert rep.returncode == 0 and '| regnetx | 2 | 2 |' in rep.stdout
    plan = run_tool_in_process('rank_study.py', ['trained-plan', *tiny, '--timing', full_run, '--epochs', '2',
                                                 '--sweep-models', '1', '--noise-models', '2'], '', tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert '| main |' in plan.stdout and '| noise |' in plan.stdout and 'CPU hours' in plan.stdout
    bad = run_tool_in_process('rank_study.py', ['trained-sweep', *tiny, '--lrs', '1e-3', '--out', tmp_path / 'x'],
                              '', tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith('error: --lrs needs two or more')


def test_budget_report_compares_the_same_networks_under_two_budgets(tmp_path):
    torch.set_num_threads(1)
    short, longer = tmp_path / 'e1.jsonl', tmp_path / 'e2.jsonl'
    base = replace(TINY, spaces=('ir_stage', 'ir_linear'))
    run_study(base, str(short), progress=False)
    run_study(replace(base, epochs=2), str(longer), progress=False)
    rep = run_tool_in_process('rank_study.py', ['trained-runs-report', 'budget', '--inputs', short, longer],
                              '', tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert 'A = 1 epoch x 48 images, B = 2 epochs x 48 images (6 networks in both)' in rep.stdout
    a = {(r['space'], r['index']): r['error'] for r in read_records(str(short))}
    b = {(r['space'], r['index']): r['error'] for r in read_records(str(longer))}
    assert a != b  # the longer budget trained the same networks further
    table = budget_table(read_records(str(short)), read_records(str(longer)), n_boot=200)
    assert [(r['space'], r['n']) for r in table['spaces']] == [('ir_stage', 3), ('ir_linear', 3)]
    for row in table['spaces']:  # the paired change is over the same networks
        keys = [k for k in a if k[0] == row['space']]
        assert row['change'] == pytest.approx(sum(b[k] - a[k] for k in keys) / len(keys))
    [pair] = table['pairs']
    assert (pair['a'], pair['b']) == ('ir_linear', 'ir_stage')
    for run, errors in (('run_a', a), ('run_b', b)):  # matched networks: paired within each run
        assert pair[run]['paired']['n'] == 3
        assert pair[run]['paired']['mean'] == pytest.approx(
            sum(errors[('ir_linear', i)] - errors[('ir_stage', i)] for i in range(3)) / 3)
    one = run_tool_in_process('rank_study.py', ['trained-runs-report', 'budget', '--inputs', short], '', tmp_path)
    assert one.returncode == 2 and one.stderr.startswith('error: trained-runs-report budget compares two runs')
    other = tmp_path / 'other.jsonl'
    run_study(replace(TINY, spaces=('regnetx',), num_models=1), str(other), progress=False)
    none = run_tool_in_process('rank_study.py', ['trained-runs-report', 'budget', '--inputs', short, other],
                               '', tmp_path)
    assert none.returncode == 2 and none.stderr.startswith('error: the two runs share no network')


def test_noise_statistics_against_a_hand_computation():
    import numpy as np
    from scipy.stats import spearmanr
    # 4 networks in two matched spaces, each trained with 3 seeds; network 3 is missing from the last run
    errors = {'ir_stage': [[30.0, 34.0, 31.0], [40.0, 37.0, 42.0], [25.0, 29.0, 24.0], [50.0, 51.0, None]],
              'ir_linear': [[33.0, 35.0, 30.0], [41.0, 45.0, 43.0], [26.0, 27.0, 31.0], [52.0, 49.0, None]]}
    runs = [[dict(space=space, index=i, error=errs[i][j], arch=dict(depth=12 + i, w0=8, wa=4.0 + i, wm=2.0),
                  flops=1e7, settings=dict(train_seed=j)) for space, errs in errors.items() for i in range(4)]
            for j in range(3)]
    rows = {r['space']: r for r in noise_table(runs, n_boot=200)}
    for space, errs in errors.items():
        arr = np.array(errs[:3])  # the networks trained in every run
        within = np.sqrt(np.var(arr, axis=1, ddof=1).mean())
        between = np.std(arr.mean(axis=1), ddof=1)
        true_var = max(between ** 2 - within ** 2 / 3, 0.0)
        rho = np.mean([spearmanr(arr[:, i], arr[:, j])[0] for i, j in ((0, 1), (0, 2), (1, 2))])
        r = rows[space]
        assert (r['models'], r['seeds']) == (3, 3)
        assert r['within_std'] == pytest.approx(within) and r['between_std'] == pytest.approx(between)
        assert r['retest_rho'] == pytest.approx(rho)
        assert r['reliability'] == pytest.approx(true_var / (true_var + within ** 2))
        assert r['within_ci'][0] <= within <= r['within_ci'][1]
    [pair] = noise_pairs(runs, n_boot=200)
    assert (pair['a'], pair['b'], pair['n']) == ('ir_linear', 'ir_stage', 3)
    lin, stage = np.array(errors['ir_linear'][:3]), np.array(errors['ir_stage'][:3])
    for j in range(3):  # one paired difference per training seed, then on the mean over seeds
        assert pair['runs'][j]['mean'] == pytest.approx((lin[:, j] - stage[:, j]).mean())
    assert pair['seed_mean']['mean'] == pytest.approx((lin.mean(1) - stage.mean(1)).mean())
    md = noise_markdown(runs)
    assert '| training seed 0 | training seed 1 | training seed 2 | mean over seeds |' in md
    # a network whose architecture differs between runs is not the same network: it is left out
    runs[2][0]['arch'] = dict(runs[2][0]['arch'], depth=99)
    assert {r['space']: r['models'] for r in noise_table(runs, n_boot=200)} == {'ir_stage': 2, 'ir_linear': 3}


def test_per_space_learning_rates(tmp_path):
    s = replace(TINY, spaces=('regnetx',), num_models=1, space_lrs=(('regnetx', 1e-3),))
    assert s.lr_of('regnetx') == 1e-3 and s.lr_of('ir_linear') == TINY.lr
    out = tmp_path / 'lr.jsonl'
    run_study(s, str(out), progress=False)
    (rec,) = read_records(str(out))
    assert rec['lr'] == 1e-3 and '(per space: regnetx 0.001)' in report_markdown([rec])
    with pytest.raises(InvalidInputError, match='--space-lr ir_stage=0.1'):
        replace(s, space_lrs=(('ir_stage', 0.1),)).check()
    bad = run_tool_in_process('rank_study.py', ['trained', '--space-lr', 'regnetx:0.1', '--out', tmp_path / 'x'], '',
                              tmp_path)
    assert bad.returncode == 2 and "give SPACE=LR" in bad.stderr
