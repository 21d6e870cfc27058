"""Wrong inputs a user may give our tools: each exits non-zero with a message that names the file,
says what is wrong and what to do, and prints no traceback (issue "Nothing silently wrong").

Every tool follows one convention (``rexnet_backbones/cli.py``): exit code 2, exactly one line
starting with ``error:`` on stderr, no traceback unless ``--debug``/``REXNET_DEBUG=1``, and the
error comes before the config dump. The docs name only flags the tools accept.

The tools run on the tiny synthetic RetinaNet config (tests/configs). Each tool runs at least once as a real
subprocess (the exit code and the streams as a user sees them); the other error cases, which stop before any work,
and the few that train or test the tiny model (whose real command lines tests/test_tools.py runs) run the same
command in the test process (``run_tool_in_process``: the command's ``main``, fd 1/2 captured), so that the
imports of torch and mmdet are paid once instead of once per case.
"""
import os
import re
import shutil

import pytest

from _helpers_tools import DET_CONFIG, REPO_ROOT, TOOLS, describe, run_tool, run_tool_in_process

pytest.importorskip('mmdet')
torch = pytest.importorskip('torch')

pytestmark = pytest.mark.slow


def _build_tiny(**cfg_options):
    """The tiny RetinaNet of DET_CONFIG (optionally changed), as the Runner builds it."""
    from mmengine.config import Config
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    import rexnet_backbones  # noqa: F401
    cfg = Config.fromfile(DET_CONFIG)
    cfg.merge_from_dict(cfg_options)
    register_all_modules()
    torch.manual_seed(0)
    return MODELS.build(cfg.model)


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """A fitting checkpoint, one of another RetinaNet (other neck width) and a ResNet-18 state_dict."""
    import torchvision
    root = tmp_path_factory.mktemp('ckpts')
    good = root / 'good.pth'
    torch.save({'state_dict': _build_tiny().state_dict(), 'meta': {}}, good)
    other = root / 'other_retinanet.pth'
    torch.save({'state_dict': _build_tiny(**{'model.neck.out_channels': 16,
                                             'model.bbox_head.in_channels': 16}).state_dict(),
                'meta': {}}, other)
    r18 = root / 'resnet18.pth'
    torch.save(torchvision.models.resnet18().state_dict(), r18)
    return dict(good=good, other=other, r18=r18)


def _assert_clean_error(proc, *words):
    assert proc.returncode == 2, describe(proc)
    assert 'Traceback' not in proc.stderr, describe(proc)
    for word in words:
        assert word in proc.stderr, f'{word!r} not in the message\n{describe(proc)}'


# 1. another model's checkpoint -------------------------------------------------------------
def test_test_refuses_another_models_checkpoint(data_root, checkpoints, tmp_path):
    proc = run_tool_in_process('test.py', [DET_CONFIG, checkpoints['other'], '--work-dir', tmp_path], data_root,
                               tmp_path)
    _assert_clean_error(proc, str(checkpoints['other']), 'does not fit the model', 'with another shape',
                        'another config', '--allow-partial')
    proc = run_tool_in_process('test.py', [DET_CONFIG, checkpoints['r18'], '--work-dir', tmp_path], data_root,
                               tmp_path)
    _assert_clean_error(proc, 'resnet18.pth', 'model key(s) missing', 'unexpected', '(0 of ')


def test_allow_partial_loads_what_fits_and_says_so(data_root, checkpoints, tmp_path):
    proc = run_tool_in_process('test.py', [DET_CONFIG, checkpoints['other'], '--work-dir', tmp_path,
                                           '--allow-partial'], data_root, tmp_path)
    assert proc.returncode == 0, describe(proc)
    log = proc.stdout + proc.stderr
    assert '--allow-partial: loading what fits' in log and 'coco/bbox_mAP' in log


def test_train_load_from_refuses_another_models_checkpoint(data_root, checkpoints, tmp_path):
    proc = run_tool_in_process('train.py', [DET_CONFIG, '--work-dir', tmp_path / 'wd', '--cfg-options',
                                            f'load_from={checkpoints["r18"]}'], data_root, tmp_path)
    _assert_clean_error(proc, 'resnet18.pth', 'does not fit the model')
    assert not list((tmp_path / 'wd').glob('*.pth'))  # nothing was trained


# 3. TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD ---------------------------------------------------------
def test_torch_force_no_weights_only_needs_explicit_trust(data_root, checkpoints, tmp_path):
    args = [DET_CONFIG, checkpoints['good'], '--work-dir', tmp_path]
    proc = run_tool_in_process('test.py', args, data_root, tmp_path, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1')
    _assert_clean_error(proc, 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 is set', 'runs any code', '--trust-checkpoint')
    proc = run_tool_in_process('train.py', [DET_CONFIG, '--work-dir', tmp_path / 'wd', '--resume'], data_root,
                               tmp_path, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1')
    _assert_clean_error(proc, 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 is set')
    proc = run_tool_in_process('test.py', args + ['--trust-checkpoint'], data_root, tmp_path,
                               TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1')
    assert proc.returncode == 0, describe(proc)


# 6. corrupt annotation JSON -------------------------------------------------------------------
@pytest.mark.parametrize('split', ['train', 'val'])
def test_corrupt_annotation_json_is_named(data_root, tmp_path, split):
    root = tmp_path / 'data'
    shutil.copytree(data_root, root)
    ann = root / 'coco' / 'annotations' / f'instances_{split}2017.json'
    ann.write_text(ann.read_text()[:200])
    proc = run_tool_in_process('train.py', [DET_CONFIG, '--work-dir', tmp_path / 'wd'], str(root), tmp_path)
    _assert_clean_error(proc, str(ann), 'is not valid JSON', 'corrupt or truncated')


# 7-9. --resume -------------------------------------------------------------------------------
def test_resume_truncated_checkpoint(data_root, checkpoints, tmp_path):
    bad = tmp_path / 'epoch_1.pth'
    data = checkpoints['good'].read_bytes()
    bad.write_bytes(data[:len(data) // 2])
    proc = run_tool_in_process('train.py', [DET_CONFIG, '--work-dir', tmp_path, '--resume', bad], data_root,
                               tmp_path)
    _assert_clean_error(proc, str(bad), 'truncated, corrupt')


def test_resume_with_empty_last_checkpoint_uses_newest_file(data_root, checkpoints, tmp_path):
    (tmp_path / 'last_checkpoint').write_text('')
    proc = run_tool_in_process('train.py', [DET_CONFIG, '--work-dir', tmp_path, '--resume'], data_root, tmp_path)
    # no checkpoint at all: a clear warning, then training from scratch
    assert proc.returncode == 0, describe(proc)
    log = proc.stdout + proc.stderr
    assert 'last_checkpoint is empty' in log and 'no checkpoint found in' in log
    assert 'Auto resumed from the latest checkpoint None' not in log


def test_resume_in_empty_work_dir_warns_and_missing_file_fails(data_root, tmp_path):
    proc = run_tool_in_process('train.py', [DET_CONFIG, '--work-dir', tmp_path / 'empty', '--resume',
                                            '--cfg-options', 'train_cfg.max_epochs=1'], data_root, tmp_path)
    assert proc.returncode == 0, describe(proc)
    log = proc.stdout + proc.stderr
    assert 'WARNING - --resume: no checkpoint found in' in log and 'training starts from scratch' in log
    missing = tmp_path / 'nope.pth'
    proc = run_tool_in_process('train.py', [DET_CONFIG, '--work-dir', tmp_path / 'wd', '--resume', missing],
                               data_root, tmp_path)
    _assert_clean_error(proc, f'--resume {missing}: checkpoint not found')


def test_debug_flag_shows_the_traceback(data_root, tmp_path):
    """As a user sees it, in a real process: ``--debug`` (``REXNET_DEBUG=1`` and the other tools: below, in-process;
    the variable is read when the error is reported, so the test process sees it as a new process would)."""
    missing = tmp_path / 'nope.pth'
    proc = run_tool('train.py', [DET_CONFIG, '--work-dir', tmp_path, '--resume', missing, '--debug'],
                    data_root, tmp_path)
    assert proc.returncode == 2 and 'Traceback' in proc.stderr and 'checkpoint not found' in proc.stderr


# 18. a neck that does not take the backbone's channels -------------------------------------------
def test_wrong_neck_channels_name_backbone_out_channels(data_root, tmp_path):
    proc = run_tool_in_process('train.py', [DET_CONFIG, '--work-dir', tmp_path, '--cfg-options',
                                            'model.neck.in_channels=[38,61,128,512]'], data_root, tmp_path)
    _assert_clean_error(proc, 'model.neck.in_channels is [38, 61, 128, 512]',
                        'backbone.out_channels = [38, 61, 128, 185]')


# one convention for every tool ------------------------------------------------------------------
def _repo(path):
    return os.path.join(REPO_ROOT, path)


#: (id, tool, arguments, environment, fragment of the message); cwd is an empty tmp dir
BAD_INPUTS = [
    ('train-missing-pretrained-file', 'train.py', [_repo('configs/det/retinanet_rexnet-lite-1.0x_fpn_1x_coco.py')],
     {}, 'the pretrained weights file checkpoints/rexnet_lite_1.0.pth does not exist'),
    ('train-hub-tag-offline', 'train.py', [_repo('configs/det/retinanet_rexnet.py')], dict(HF_HUB_OFFLINE='1'),
     "the timm weights 'timm/rexnet_100.nav_in1k' are not in the Hugging Face cache and the hub is offline"),
    ('train-coco-root-of-another-dataset', 'train.py',
     [_repo('configs/det/retinanet_rexnet.py'), '--cfg-options', 'model.backbone.init_cfg=None'],
     dict(COCO_ROOT='{data_root}/coco/'), 'none of its categories (rectangle, ellipse, triangle) is a class'),
    ('test-missing-checkpoint', 'test.py', [DET_CONFIG, 'nope.pth'], {}, 'checkpoint not found: nope.pth'),
    ('test-onnx-missing', 'test.py', [DET_CONFIG, 'nope.onnx', '--backend', 'onnxruntime'], {},
     'ONNX model not found: nope.onnx'),
    ('test-onnx-not-onnx', 'test.py', [DET_CONFIG, 'text.pth', '--backend', 'openvino'], {},
     'text.pth is not an ONNX model written by tools/export.py'),
    ('export-two-stage', 'export.py', [_repo('configs/det/faster-rcnn_rexnet.py'), 'x.onnx'], {},
     'FasterRCNN is a two-stage detector'),
    ('export-unknown-model', 'export.py', ['rexnet_nope', 'x.onnx'], {}, "unknown model 'rexnet_nope'"),
    ('benchmark-unknown-model', 'benchmark.py', ['rexnet_nope', '--runs', '0'], {}, "unknown model 'rexnet_nope'"),
    ('convert-missing-file', 'convert_checkpoint.py', ['nope.pth', 'out.pth'], {},
     'checkpoint not found: nope.pth'),
    ('rank-unknown-model', 'rank_analysis.py', ['rexnet_nope', '--out-dir', 'r'], {}, "unknown model 'rexnet_nope'"),
    ('rank-missing-images', 'rank_analysis.py', ['rexnet_100', '--images', 'nofolder', '--out-dir', 'r'], {},
     'no such folder, so no images'),
    ('rank-study-too-few-samples', 'rank_study.py', ['single-layer', '--n', '8', '--d-out', '16', '--out-dir', 's'],
     {}, '--n (8) must be >= --d-out (16)'),
    ('synthetic-no-images', 'make_synthetic_data.py', ['--num-train', '0', '--out', 'syn'], {},
     'need at least one image per split'),
    ('demo-no-images', 'demo.py', ['--num-train', '0', '--data-root', 'syn', '--work-dir', 'wd'], {},
     'need at least one image per split'),
]


#: one case per tool runs as a real subprocess (train: the one that needs HF_HUB_CACHE, read at import); the others
#: run in the test process
SUBPROCESS_CASES = ('train-hub-tag-offline', 'test-onnx-missing', 'export-unknown-model', 'benchmark-unknown-model',
                    'convert-missing-file', 'rank-missing-images', 'rank-study-too-few-samples', 'synthetic-no-images',
                    'demo-no-images')


def _assert_one_error_line(proc, fragment):
    assert proc.returncode == 2, describe(proc)
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1, describe(proc)
    assert fragment in proc.stderr, f'{fragment!r} not in the message\n{describe(proc)}'
    # before the Runner's environment and config dump, and before any model was built
    log = proc.stdout + proc.stderr
    assert 'System environment' not in log and 'Config:' not in log, describe(proc)


def _known_error(case, data_root, tmp_path, run, **extra_env):
    _, tool, args, env, fragment = case
    (tmp_path / 'text.pth').write_text('not a checkpoint\n')
    env = {k: v.format(data_root=data_root) for k, v in env.items()}
    proc = run(tool, args, data_root, tmp_path, **env, **extra_env)
    _assert_one_error_line(proc, fragment)
    assert not (tmp_path / 'x.onnx').exists() and not (tmp_path / 'r').exists()
    return proc


def test_every_tool_is_in_a_subprocess_case():
    assert {c[1] for c in BAD_INPUTS if c[0] in SUBPROCESS_CASES} == {c[1] for c in BAD_INPUTS}
    assert set(SUBPROCESS_CASES) <= {c[0] for c in BAD_INPUTS}


@pytest.mark.parametrize('case', [c for c in BAD_INPUTS if c[0] in SUBPROCESS_CASES],
                         ids=[c[0] for c in BAD_INPUTS if c[0] in SUBPROCESS_CASES])
def test_every_tool_ends_a_known_error_the_same_way(case, data_root, tmp_path):
    proc = _known_error(case, data_root, tmp_path, run_tool, HF_HUB_CACHE=tmp_path / 'hf')
    assert 'Traceback' not in proc.stderr, describe(proc)


@pytest.mark.parametrize('case', [c for c in BAD_INPUTS if c[0] not in SUBPROCESS_CASES],
                         ids=[c[0] for c in BAD_INPUTS if c[0] not in SUBPROCESS_CASES])
def test_known_errors_in_process(case, data_root, tmp_path):
    proc = _known_error(case, data_root, tmp_path, run_tool_in_process)
    assert 'Traceback' not in proc.stderr, describe(proc)


@pytest.mark.parametrize('how', ['--debug', 'REXNET_DEBUG=1'])
@pytest.mark.parametrize('case', ['export-unknown-model', 'convert-missing-file', 'rank-study-too-few-samples'])
def test_debug_adds_the_traceback(case, how, data_root, tmp_path):
    _, tool, args, env, fragment = next(c for c in BAD_INPUTS if c[0] == case)
    args, env = (args + ['--debug'], env) if how == '--debug' else (args, dict(env, REXNET_DEBUG='1'))
    proc = run_tool_in_process(tool, args, data_root, tmp_path, **env)
    _assert_one_error_line(proc, fragment)
    assert 'Traceback (most recent call last)' in proc.stderr, describe(proc)


def test_test_refuses_an_onnx_file_of_another_model(data_root, tmp_path):
    """An ONNX file exported from another network: named before the Runner starts, not deep in the head."""
    from torch import nn

    from rexnet_backbones.deploy import export_onnx
    export_onnx(nn.Conv2d(3, 8, 1), tmp_path / 'other.onnx', (1, 3, 32, 32))
    proc = run_tool_in_process('test.py', [DET_CONFIG, tmp_path / 'other.onnx', '--backend', 'onnxruntime'],
                               data_root, tmp_path)
    _assert_one_error_line(proc, 'other.onnx does not match the model of')
    assert 'export this one: python tools/export.py' in proc.stderr and 'Traceback' not in proc.stderr


def test_export_refuses_a_checkpoint_of_another_model(data_root, checkpoints, tmp_path):
    """Not torch's raw ``size mismatch``: the keys that differ, in one error."""
    proc = run_tool_in_process('export.py', [DET_CONFIG, tmp_path / 'x.onnx', '--checkpoint', checkpoints['other']],
                               data_root, tmp_path)
    _assert_one_error_line(proc, 'checkpoint does not match RetinaNet')
    assert 'shape mismatches' in proc.stderr and 'Traceback' not in proc.stderr
    assert 'size mismatch for' not in proc.stderr and not (tmp_path / 'x.onnx').exists()


def test_test_runs_the_export_of_its_config_in_openvino(data_root, tmp_path, monkeypatch):
    """The counterpart: the check accepts this config's own export, and --backend openvino (which
    docs/deploy.md offers) evaluates it with the config's metric."""
    from rexnet_backbones.deploy import build_source_model, export_onnx
    with monkeypatch.context() as mp:
        mp.setenv('SYNTHETIC_DATA_ROOT', str(data_root))
        model, src = build_source_model(DET_CONFIG)
        size = src.input_size
    export_onnx(model, tmp_path / 'det.onnx', (1, 3, *size))
    proc = run_tool_in_process('test.py', [DET_CONFIG, tmp_path / 'det.onnx', '--backend', 'openvino', '--threads',
                                           '1', '--work-dir', tmp_path / 'wd'], data_root, tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert 'coco/bbox_mAP' in proc.stdout + proc.stderr


def test_threads_must_be_positive(data_root, tmp_path):
    proc = run_tool_in_process('rank_analysis.py', ['rexnet_100', '--threads', '0', '--out-dir', 'r'], data_root,
                               tmp_path)
    assert proc.returncode == 2 and 'argument --threads: must be >= 1, got 0' in proc.stderr, describe(proc)


# the docs name only flags the tools accept ------------------------------------------------------
_TOOL_RE = re.compile(r'tools/(\w+)\.py')
_FLAG_RE = re.compile(r'(?<![\w-])--[a-z][a-z0-9_-]*')


def _flags_after_tools(text):
    """``(tool, flag)`` for every ``--flag`` that follows a ``tools/X.py`` in ``text`` (the last one before it)."""
    tokens = sorted([(m.start(), 'tool', m.group(1)) for m in _TOOL_RE.finditer(text)]
                    + [(m.start(), 'flag', m.group(0)) for m in _FLAG_RE.finditer(text)])
    tool = None
    for _, kind, value in tokens:
        if kind == 'tool':
            tool = value
        elif tool is not None:
            yield tool, value


def _docs(results=True):
    """README.md and every markdown file under docs/ (docs/results/ too, unless ``results=False``)."""
    found = []
    for folder, _, files in os.walk(_repo('docs')):
        rel = os.path.relpath(folder, REPO_ROOT).replace(os.sep, '/')
        if not results and (rel + '/').startswith('docs/results/'):
            continue
        found += [f'{rel}/{n}' for n in files if n.endswith('.md')]
    return ['README.md'] + sorted(found)


def _documented_flags():
    """{tool: {flag: place}} of the flags the docs give a tool: in a command of a code block (a line, or
    one continued with a backslash), in an inline code span that names the tool, or in the tool's row of
    a table."""
    found = {}
    for doc in _docs():
        with open(_repo(doc), encoding='utf-8') as f:
            lines = f.read().replace('\\\n', ' ').splitlines()
        fenced = False
        for number, line in enumerate(lines, 1):
            if line.lstrip().startswith('```'):
                fenced = not fenced
                continue
            if fenced or re.match(r'\|\s*`tools/\w+\.py`', line):
                pairs = _flags_after_tools(line)
            else:
                pairs = [p for span in re.findall(r'`([^`]*)`', line) for p in _flags_after_tools(span)]
            for tool, flag in pairs:
                found.setdefault(tool, {}).setdefault(flag, f'{doc}:~{number}')
    return found


def _help(tool, data_root, tmp_path):
    """The tool's ``--help`` and, for a tool with subcommands (``{run,report}`` in its usage), each one's."""
    def help_of(args):
        # in-process: argparse wraps at COLUMNS, 80 as in a subprocess writing to a pipe
        proc = run_tool_in_process(f'{tool}.py', args + ['--help'], data_root, tmp_path, COLUMNS=80)
        assert proc.returncode == 0, describe(proc)
        return proc.stdout
    text = help_of([])
    usage = text.split('\n\n')[0]
    subcommands = re.search(r'\{([a-z0-9,-]+)\}', usage)
    for sub in subcommands.group(1).split(',') if subcommands else []:
        text += help_of([sub])
    return text


def _tools_table():
    """{tool: the flags of its row in the Tools table of docs/tools.md}."""
    with open(_repo('docs/tools.md'), encoding='utf-8') as f:
        rows = [line for line in f if re.match(r'\|\s*`tools/\w+\.py`', line)]
    return {_TOOL_RE.search(row).group(1): set(_FLAG_RE.findall(row)) for row in rows}


def test_docs_and_tools_agree_on_every_flag(data_root, tmp_path):
    """Every flag the docs give a tool is one it accepts; every flag it accepts is in its Tools-table row."""
    documented, table = _documented_flags(), _tools_table()
    tools = sorted(f[:-3] for f in os.listdir(TOOLS) if f.endswith('.py'))
    assert set(tools) <= set(table), 'tools missing from the Tools table of docs/tools.md'
    wrong = []
    for tool in tools:
        text = _help(tool, data_root, tmp_path)
        accepted = set(_FLAG_RE.findall(text))
        options = set(re.findall(r'^\s+(--[a-z][a-z0-9_-]*)', text, re.M)) - {'--help', '--local_rank'}
        wrong += [f'{where}: tools/{tool}.py {flag} is not accepted'
                  for flag, where in documented.get(tool, {}).items() if flag not in accepted]
        wrong += [f'docs/tools.md Tools table: tools/{tool}.py lacks {flag}' for flag in sorted(options - table[tool])]
    assert not wrong, '\n'.join(wrong)


def test_docs_write_to_work_dirs_not_over_tracked_files():
    """Commands (code blocks, inline code naming a tool) never write into docs/; prose may say that the tracked
    files there came from these commands. docs/results/ is left out: each file there records the exact command
    that wrote it."""
    pattern = re.compile(r'(--out-dir|--out-json|--out-md|--work-dir|--out)\s+docs/')
    for doc in _docs(results=False):
        with open(_repo(doc), encoding='utf-8') as f:
            text = f.read().replace('\\\n', ' ')
        commands = re.findall(r'```.*?```', text, re.S) + [s for s in re.findall(r'`([^`\n]*)`', text) if 'tools/' in s]
        assert not [c for c in commands if pattern.search(c)], f'{doc} has a command writing into docs/'
