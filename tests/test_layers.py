"""The layer contract (``.importlinter``, drawn in docs/layers.md) holds: ``lint-imports`` exits 0.

import-linter counts imports inside functions too, so an upward import or a cycle anywhere in the package
fails this test (and so ``make test``), with import-linter's report of the offending import chain.
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / 'lint-imports'


def test_import_contracts_hold():
    assert LINT_IMPORTS.is_file(), (f'{LINT_IMPORTS} is missing: install the dev extra '
                                    "(pip install -e '.[dev]'), which pins import-linter")
    # this checkout's package first on the path: grimp analyses the files python would import
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run([str(LINT_IMPORTS), '--config', str(ROOT / '.importlinter'), '--no-cache'],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert 'Contracts: 3 kept, 0 broken.' in proc.stdout, proc.stdout[-3000:]


def test_errors_module_is_a_leaf():
    """Every exception class of the package lives in rexnet_backbones/errors.py."""
    import ast
    classes = {}
    for path in sorted((ROOT / 'rexnet_backbones').rglob('*.py')):
        tree = ast.parse(path.read_text(encoding='utf-8'))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                    getattr(b, 'id', getattr(b, 'attr', '')).endswith(('Error', 'Exception')) for b in node.bases):
                classes.setdefault(node.name, []).append(path.relative_to(ROOT).as_posix())
    elsewhere = {name: files for name, files in classes.items() if files != ['rexnet_backbones/errors.py']}
    assert not elsewhere, elsewhere
    assert len(classes) == 17, sorted(classes)
