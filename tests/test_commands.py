"""The commands (``rexnet_cli``, console entry points ``rexnet-*``) and their ``tools/*.py`` shims.

A command parses its arguments before torch or the library is imported, so ``--help`` and a wrong flag answer
at once; the values its parser shares with the library are the library's.
"""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = sorted(p.stem for p in (ROOT / 'rexnet_cli').glob('*.py') if not p.stem.startswith('_'))
#: commands whose parser needs the library's tables (estimators, spaces, study defaults): torch loads first
PARSE_AFTER_IMPORT = ('rank_study',)

PROBE = """
import json, sys, importlib, io, contextlib
result = {}
for name, args in json.loads(sys.argv[1]):
    main = importlib.import_module('rexnet_cli.' + name).main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as e:
            code = e.code
    result[name + ' ' + ' '.join(args)] = [code, err.getvalue()[-300:]]
result['loaded'] = sorted(m for m in ('torch', 'rexnet_backbones', 'timm', 'mmdet') if m in sys.modules)
print(json.dumps(result))
"""


def test_each_tool_is_a_shim_of_its_command():
    tools = sorted(p.stem for p in (ROOT / 'tools').glob('*.py'))
    assert tools == COMMANDS
    for name in tools:
        tree = ast.parse((ROOT / 'tools' / f'{name}.py').read_text(encoding='utf-8'))
        imports = [(n.module, [a.name for a in n.names]) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert imports == [(f'rexnet_cli.{name}', ['main'])], (name, imports)


def test_console_entry_points_name_every_installed_command():
    tree = ast.parse((ROOT / 'setup.py').read_text(encoding='utf-8'))
    (listed,) = [n.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                 and getattr(n.targets[0], 'id', '') == 'COMMANDS']
    names = ast.literal_eval(listed)
    # gpu_check runs the checkout's tools/dist_train.sh, make_gpu_bundle reads its constraints: checkout tools only
    assert sorted(names) == [c for c in COMMANDS if c not in ('gpu_check', 'make_gpu_bundle')]


def test_help_and_a_wrong_flag_answer_before_torch_is_imported():
    fast = [c for c in COMMANDS if c not in PARSE_AFTER_IMPORT]
    calls = [(name, ['--help']) for name in fast] + [(name, ['--no-such-flag']) for name in fast]
    proc = subprocess.run([sys.executable, '-c', PROBE, json.dumps(calls)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')])))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result.pop('loaded') == []
    for name in fast:
        assert result[f'{name} --help'][0] == 0, (name, result[f'{name} --help'])
        code, err = result[f'{name} --no-such-flag']
        assert code == 2 and 'error: ' in err, (name, code, err)  # argparse's usage error (a missing argument first)


def test_the_parsers_use_the_library_values():
    from rexnet_backbones import analysis, cli, demo
    from rexnet_backbones.benchmark import BACKENDS
    from rexnet_backbones.data import synthetic
    from rexnet_backbones.engine.runner import ONNX_BACKENDS
    from rexnet_cli import _args, benchmark, make_synthetic_data, rank_analysis
    from rexnet_cli import demo as demo_command
    assert _args.DEBUG_ENV == cli.DEBUG_ENV
    assert _args.ONNX_BACKENDS == ONNX_BACKENDS
    assert benchmark.BACKENDS == BACKENDS
    assert (rank_analysis.ESTIMATORS, rank_analysis.DEFAULT_RTOL) == (analysis.ESTIMATORS, analysis.DEFAULT_RTOL)
    assert (make_synthetic_data.DEFAULT_DATA_ROOT, make_synthetic_data.DET_SUBDIR, make_synthetic_data.SEG_SUBDIR) \
        == (synthetic.DEFAULT_DATA_ROOT, synthetic.DET_SUBDIR, synthetic.SEG_SUBDIR)
    assert os.path.normpath(demo_command.DEFAULT_WORK_DIR) == os.path.normpath(demo.DEFAULT_WORK_DIR)
