"""The documentation: the mkdocs site builds with --strict (a broken link or anchor fails it), the README's first
snippet runs as written, the README's links resolve, no doc or committed result holds an absolute machine path,
and every results file states its hardware, date, versions, commit and command."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / 'docs'
RESULTS = DOCS / 'results'


def _mkdocs_build(config: Path, site_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--strict', '-f', str(config), '-d', str(site_dir)],
                          capture_output=True, text=True, cwd=config.parent, timeout=600,
                          env={**os.environ, 'PYTHONPATH': str(ROOT)})


def test_site_builds_strictly(tmp_path):
    proc = _mkdocs_build(ROOT / 'mkdocs.yml', tmp_path / 'site')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / 'site' / 'index.html').is_file()
    api = (tmp_path / 'site' / 'api' / 'index.html').read_text(encoding='utf-8')
    assert 'resolve_config' in api and 'load_weights' in api, 'the API page lacks the docstrings of the package'


def test_every_page_is_in_the_nav():
    nav = yaml.safe_load((ROOT / 'mkdocs.yml').read_text(encoding='utf-8'))['nav']
    pages = {next(iter(item.values())) for item in nav}
    on_disk = {p.name for p in DOCS.glob('*.md')} | {'results/index.md'}
    assert pages == on_disk, f'mkdocs.yml nav lacks {sorted(on_disk - pages)}, names missing {sorted(pages - on_disk)}'


@pytest.mark.parametrize('link, fragment', [('missing.md', "contains a link 'missing.md'"),
                                            ('other.md#no-such-anchor', "does not contain an anchor '#no-such-anchor'"),
                                            ('other.md#a-heading', None)])
def test_a_broken_link_or_anchor_fails_the_build(tmp_path, link, fragment):
    """The project's validation settings, on a two-page site: a missing page or anchor fails, a good link passes."""
    ours = yaml.safe_load((ROOT / 'mkdocs.yml').read_text(encoding='utf-8'))
    (tmp_path / 'docs').mkdir()
    (tmp_path / 'docs' / 'index.md').write_text(f'# Home\n\nSee [the other page]({link}).\n', encoding='utf-8')
    (tmp_path / 'docs' / 'other.md').write_text('# Other\n\n## A heading\n\nText.\n', encoding='utf-8')
    config = dict(site_name='t', docs_dir='docs', nav=['index.md', 'other.md'], validation=ours['validation'],
                  markdown_extensions=ours['markdown_extensions'])
    (tmp_path / 'mkdocs.yml').write_text(yaml.safe_dump(config), encoding='utf-8')
    proc = _mkdocs_build(tmp_path / 'mkdocs.yml', tmp_path / 'site')
    if fragment is None:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    else:
        assert proc.returncode != 0 and fragment in proc.stderr, proc.stdout + proc.stderr


# README ---------------------------------------------------------------------------------------------------------
def _readme() -> str:
    return (ROOT / 'README.md').read_text(encoding='utf-8')


def test_readme_is_short():
    assert len(_readme().splitlines()) <= 250


def test_readme_first_snippet_runs_as_written(capsys):
    """The first Python block runs offline (conftest sets HF_HUB_OFFLINE) and prints what its comments say."""
    code = re.search(r'```python\n(.*?)```', _readme(), re.S).group(1)
    exec(compile(code, 'README.md', 'exec'), {})
    printed = capsys.readouterr().out.splitlines()
    promised = [m.group(1) for m in re.finditer(r'^print\(.*#\s*(\[.*\])$', code, re.M)]
    assert promised and printed == promised


def _anchors(path: Path) -> set:
    text = re.sub(r'```.*?```', '', path.read_text(encoding='utf-8'), flags=re.S)
    return {slugify(re.sub(r'[`*]', '', m.group(1)).strip(), '-') for m in re.finditer(r'^#+\s+(.*)$', text, re.M)}


def test_readme_links_and_anchors_resolve():
    wrong = []
    for target in re.findall(r'\]\(([^)\s]+)\)', _readme()):
        if re.match(r'[a-z]+:', target):
            continue
        path, _, anchor = target.partition('#')
        file = ROOT / path
        if not file.exists():
            wrong.append(f'{target}: no such file')
        elif anchor and anchor not in _anchors(file):
            wrong.append(f'{target}: no such heading in {path}')
    assert not wrong, '\n'.join(wrong)


def test_docs_call_python_one_way():
    """Commands say `python` (the activated venv), never `.venv/bin/python`, in the README and the pages."""
    wrong = []
    for doc in [ROOT / 'README.md'] + sorted(DOCS.glob('*.md')):
        for block in re.findall(r'```(?:bash|sh)?\n(.*?)```', doc.read_text(encoding='utf-8'), re.S):
            wrong += [f'{doc.name}: {line}' for line in block.splitlines() if '.venv/bin/python' in line]
    assert not wrong, '\n'.join(wrong)


# machine paths --------------------------------------------------------------------------------------------------
_TEXT = {'.md', '.json', '.jsonl', '.log', '.txt', '.py', '.yml', '.yaml', '.csv'}


def machine_paths(text: str, checkout: Path = ROOT) -> list:
    """Absolute paths of a machine in ``text``: the checkout's own path and its parent, temporary folders, root's
    and users' home folders, and the project machines' work root."""
    prefixes = ['/tmp', '/var/tmp', '/dev/shm', '/root', '/home', '/Users', '/work']
    prefixes += [str(p) for p in (checkout, checkout.parent) if str(p) not in ('/', '')]
    alternatives = '|'.join(re.escape(p) for p in sorted(set(prefixes), key=len, reverse=True))
    return [m.group(0) for m in re.finditer(rf'(?<![\w.~-])(?:{alternatives})(?=/|\b)[^\s"\'`)\]]*', text)]


def _documents():
    yield ROOT / 'README.md'
    yield ROOT / 'CHANGELOG.md'
    for folder in (DOCS, ROOT / 'configs'):
        yield from (p for p in sorted(folder.rglob('*')) if p.is_file() and p.suffix in _TEXT)


def test_machine_path_finder_finds_them():
    text = 'ran in /tmp/inst-clone and ~/x, /opt/rh/gcc-toolset-13/root/usr/bin/c++'
    assert machine_paths(text) == ['/tmp/inst-clone']
    assert machine_paths(f'see {ROOT}/configs/det and {ROOT.parent}/shared', ROOT) == [f'{ROOT}/configs/det',
                                                                                      f'{ROOT.parent}/shared']
    assert machine_paths('"cmd": "/root/out/x.json", /home/me/data') == ['/root/out/x.json', '/home/me/data']
    assert machine_paths('work_dirs/tmp/a, /usr/local/cuda, /proc/self/clear_refs, ../shared/wheels') == []


def test_no_machine_paths_in_docs_configs_and_results():
    found = [f'{p.relative_to(ROOT)}: {hit}' for p in _documents()
             for hit in machine_paths(p.read_text(encoding='utf-8', errors='replace'))]
    assert not found, '\n'.join(found)


# results files --------------------------------------------------------------------------------------------------
def test_every_results_file_states_its_conditions():
    keys = ['**Hardware:**', '**Date:**', '**Versions:**', '**Commit:**', '**Command:**']
    tables = [p for p in sorted(RESULTS.rglob('*.md')) if p.name != 'index.md']
    assert len(tables) >= 25
    missing = [f'{p.relative_to(ROOT)}: {k}' for p in tables
               for k in keys if k not in '\n'.join(p.read_text(encoding='utf-8').splitlines()[:30])]
    assert not missing, 'start each results file with these fields (docs/contributing.md):\n' + '\n'.join(missing)


def test_results_index_lists_every_results_file():
    index = (RESULTS / 'index.md').read_text(encoding='utf-8')
    listed = set(re.findall(r'\]\(([^)#]+\.md)\)', index))
    on_disk = {p.relative_to(RESULTS).as_posix() for p in RESULTS.rglob('*.md') if p.name != 'index.md'}
    assert on_disk == listed, (f'docs/results/index.md lacks a row for {sorted(on_disk - listed)}, '
                               f'lists missing files {sorted(listed - on_disk)}')
