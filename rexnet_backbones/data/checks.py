"""Up-front dataset checks for ``tools/train.py`` and ``tools/test.py``.

Without them a missing dataset shows up deep inside the Runner (``FileNotFoundError`` from a
dataset's ``load_data_list`` or from pycocotools) after models are built. Here the dataloader and
evaluator configs are walked instead, every local path a dataset would read
(``data_root`` + ``ann_file`` / ``data_prefix``, evaluator ``ann_file``) is checked, and
:class:`DatasetNotFoundError` carries a message that names the missing paths, the standard layout,
how to point the config elsewhere and the synthetic alternative.

Only plain dicts / mmengine ``Config`` objects are needed; nothing here imports OpenMMLab.
"""
from __future__ import annotations

import ast
import os
import os.path as osp
import re
from typing import Any, Callable, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from ..errors import AnnotationFileError, DatasetMismatchError, DatasetNotFoundError

__all__ = [
    'check_annotation_files',
    'check_coco_contents', 'MissingPath', 'find_missing_dataset_paths', 'check_dataset_paths',
    'format_missing_dataset_message', 'splits_for_training'
]


class MissingPath(NamedTuple):
    key: str  # dotted config key of the dataset/evaluator, e.g. 'train_dataloader.dataset'
    field: str  # 'ann_file', 'data_prefix.img', 'data_root', ...
    path: str  # the path as the dataset would open it
    dataset_type: str  # e.g. 'CocoDataset', '' for evaluators
    has_data_root: bool  # the dataset config sets a data_root that could be overridden


# standard layouts, keyed by dataset type
_LAYOUTS = {
    'CocoDataset': ('data/coco', [
        'data/coco/annotations/instances_train2017.json',
        'data/coco/annotations/instances_val2017.json',
        'data/coco/train2017/*.jpg',
        'data/coco/val2017/*.jpg',
    ]),
    'ADE20KDataset': ('data/ade/ADEChallengeData2016', [
        'data/ade/ADEChallengeData2016/images/{training,validation}/*.jpg',
        'data/ade/ADEChallengeData2016/annotations/{training,validation}/*.png',
    ]),
    'CityscapesDataset': ('data/cityscapes', [
        'data/cityscapes/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png',
        'data/cityscapes/gtFine/{train,val}/<city>/*_gtFine_labelTrainIds.png'
        '  (made by mmseg tools/dataset_converters/cityscapes.py)',
    ]),
    'BaseSegDataset': ('data/synthetic/seg', [
        'data/synthetic/seg/img_dir/{train,val}/*.jpg',
        'data/synthetic/seg/ann_dir/{train,val}/*.png',
    ]),
}
_SEG_TYPES = ('ADE20KDataset', 'CityscapesDataset', 'BaseSegDataset')
_SPLITS = ('train', 'val', 'test')
_ENV_RE = re.compile(r'\{\{[\'"]?\s*\$(\w+)\s*:\s*(\S*?)\s*[\'"]?\}\}')


def _get(cfg, key, default=None):
    try:
        return cfg.get(key, default)
    except AttributeError:  # pragma: no cover - cfg is always dict-like here
        return default


def _is_remote(path: str, backend_args) -> bool:
    if '://' in str(path):
        return True
    backend = (backend_args or {}).get('backend') if isinstance(backend_args, dict) else None
    return backend not in (None, 'local', 'disk')


def _iter_leaf_datasets(ds, key: str) -> Iterator[Tuple[str, dict]]:
    """Yield ``(key, dataset_cfg)`` of real datasets, looking inside dataset wrappers."""
    if not isinstance(ds, dict):
        return
    inner = ds.get('datasets')
    if isinstance(inner, (list, tuple)):  # ConcatDataset & co.
        for i, sub in enumerate(inner):
            yield from _iter_leaf_datasets(sub, f'{key}.datasets.{i}')
    elif isinstance(ds.get('dataset'), dict):  # RepeatDataset, ClassBalancedDataset, ...
        yield from _iter_leaf_datasets(ds['dataset'], f'{key}.dataset')
    else:
        yield key, ds


def _join(root: str, path: str) -> str:
    return osp.join(root, path) if root else path


def find_missing_dataset_paths(cfg, splits: Sequence[str] = _SPLITS) -> List[MissingPath]:
    """All local dataset paths of ``<split>_dataloader`` / ``<split>_evaluator`` that don't exist.

    Relative paths are resolved against the current directory, as the datasets do.
    """
    missing: List[MissingPath] = []
    seen = set()

    def add(item: MissingPath):
        if (item.key, item.field) not in seen:  # test_dataloader may be val_dataloader
            seen.add((item.key, item.field))
            missing.append(item)

    for split in splits:
        if split not in _SPLITS:
            raise ValueError(f'unknown split {split!r}, expected one of {_SPLITS}')
        loader = _get(cfg, f'{split}_dataloader')
        if isinstance(loader, dict) and isinstance(loader.get('dataset'), dict):
            for key, ds in _iter_leaf_datasets(loader['dataset'], f'{split}_dataloader.dataset'):
                backend_args = ds.get('backend_args')
                dtype = ds.get('type', '')
                dtype = dtype if isinstance(dtype, str) else getattr(dtype, '__name__', str(dtype))
                root = ds.get('data_root') or ''
                candidates = []
                if ds.get('ann_file'):
                    candidates.append(('ann_file', _join(root, ds['ann_file'])))
                prefix = ds.get('data_prefix') or {}
                if isinstance(prefix, dict):
                    for name, value in prefix.items():
                        if isinstance(value, str) and value:
                            candidates.append((f'data_prefix.{name}', _join(root, value)))
                if root and not _is_remote(root, backend_args) and not osp.isdir(root):
                    add(MissingPath(key, 'data_root', root, dtype, True))
                for field, path in candidates:
                    if not _is_remote(path, backend_args) and not osp.exists(path):
                        add(MissingPath(key, field, path, dtype, bool(root)))
        evaluator = _get(cfg, f'{split}_evaluator') if split != 'train' else None
        metrics = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
        for i, metric in enumerate(metrics):
            if not isinstance(metric, dict) or not metric.get('ann_file'):
                continue
            key = f'{split}_evaluator' + (f'.{i}' if isinstance(evaluator, (list, tuple)) else '')
            path = metric['ann_file']
            if not _is_remote(path, metric.get('backend_args')) and not osp.exists(path):
                add(MissingPath(key, 'ann_file', path, '', False))
    return missing


def _local_base_files(filename: str) -> List[str]:
    """Paths of the ``_base_`` files of a config that live on disk next to it (not ``pkg::``)."""
    try:
        with open(filename, encoding='utf-8') as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return []
    bases: List[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == '_base_' for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            for base in ([value] if isinstance(value, str) else list(value)):
                if isinstance(base, str) and '::' not in base:
                    bases.append(osp.normpath(osp.join(osp.dirname(filename), base)))
    return bases


def _config_env_variables(cfg) -> List[Tuple[str, str]]:
    """``{{$NAME:default}}`` placeholders in the config file and its local base files (mmengine
    substitutes them from the environment)."""
    filename = getattr(cfg, 'filename', None)
    found, todo, seen = set(), [filename] if filename else [], set()
    while todo:
        path = todo.pop()
        if path in seen or not osp.isfile(path):
            continue
        seen.add(path)
        try:
            with open(path, encoding='utf-8') as f:
                found.update(_ENV_RE.findall(f.read()))
        except OSError:  # pragma: no cover
            continue
        todo.extend(_local_base_files(path))
    return sorted(found)


def _root_of(cfg, key: str) -> str:
    """data_root of the dataset config at dotted ``key`` ('' if none)."""
    node = cfg
    for part in key.split('.'):
        if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) or hasattr(node, 'get'):
            node = node.get(part)
        else:
            return ''
        if node is None:
            return ''
    return (node.get('data_root') or '') if isinstance(node, dict) else ''


def format_missing_dataset_message(cfg, missing: Iterable[MissingPath]) -> str:
    missing = list(missing)
    lines = [
        'Dataset not found: these paths from the config do not exist '
        f'(relative paths are resolved against {os.getcwd()}):'
    ]
    width = max(len(f'{m.key}.{m.field}') for m in missing)
    for m in missing:
        lines.append(f'  {m.key + "." + m.field:<{width}}  {m.path}')

    types = []
    for m in missing:
        if m.dataset_type and m.dataset_type not in types:
            types.append(m.dataset_type)
    layouts = [t for t in types if t in _LAYOUTS]
    if layouts:
        lines.append('')
        for t in layouts:
            root, files = _LAYOUTS[t]
            lines.append(f'Standard layout for {t} (root {root}/):')
            lines += [f'  {f}' for f in files]
    elif types:
        lines.append('')
        lines.append(f'Dataset type(s): {", ".join(types)}; see the mmdet/mmseg dataset docs for '
                     'their layout.')

    lines.append('')
    lines.append('To fix it, do one of:')
    root_hint = _LAYOUTS.get(layouts[0], ('data/<dataset>', ))[0] if layouts else 'data/<dataset>'
    lines.append(f'  * put the dataset there, or symlink it: ln -s /path/to/dataset {root_hint}')
    roots = sorted({_root_of(cfg, m.key) for m in missing if m.has_data_root} - {''},
                   key=len, reverse=True)
    overrides = []
    for m in missing:
        if m.has_data_root:
            opt = f'{m.key}.data_root=/path/to/dataset/'
        else:
            rest = osp.basename(m.path.rstrip('/')) or 'file'
            for root in roots:  # e.g. val_evaluator.ann_file = data_root + 'annotations/...'
                if m.path.startswith(root):
                    rest = m.path[len(root):].lstrip('/')
                    break
            opt = f'{m.key}.{m.field}=/path/to/dataset/{rest}'
        if opt not in overrides:
            overrides.append(opt)
    lines.append('  * or point the config at it on the command line:')
    lines.append('      --cfg-options ' + ' '.join(overrides))
    env_vars = _config_env_variables(cfg)
    if env_vars:
        names = ', '.join(f'{name} (default {default!r})' for name, default in env_vars)
        lines.append(f'  * or set the environment variable(s) this config reads: {names}')
    lines.append('  * or, for a quick smoke run without the real data, generate a small synthetic '
                 'set with')
    lines.append('      rexnet-make-synthetic-data        (python tools/make_synthetic_data.py in a checkout; '
                 'writes data/synthetic/coco and data/synthetic/seg)')
    seg = _get(cfg, 'default_scope') == 'mmseg' or any(t in _SEG_TYPES for t in types)
    example, tiny = ('seg/fpn_rexnet_synthetic.py', 'fpn_tiny_synthetic_seg.py') if seg else \
        ('det/retinanet_rexnet_synthetic.py', 'retinanet_tiny_synthetic.py')
    lines.append(f'    and use a config that reads it (3 shape classes), e.g. rexnet_backbones::{example} '
                 f'(or, in a checkout, the tiny tests/configs/{tiny})')
    return '\n'.join(lines)


def check_dataset_paths(cfg, splits: Sequence[str] = _SPLITS) -> None:
    """Raise :class:`DatasetNotFoundError` naming every missing path of ``splits``."""
    missing = find_missing_dataset_paths(cfg, splits)
    if missing:
        raise DatasetNotFoundError(format_missing_dataset_message(cfg, missing))


def splits_for_training(cfg) -> List[str]:
    """Splits a training run reads: train, plus val when validation is configured."""
    splits = ['train']
    if _get(cfg, 'val_dataloader') and _get(cfg, 'val_cfg') is not None and \
            _get(cfg, 'val_evaluator') is not None:
        splits.append('val')
    return splits



#: annotation files larger than this are not parsed up front (COCO train is ~450 MB): only their
#: first and last bytes are checked
FULL_PARSE_LIMIT = 64 * 1024 * 1024


def _annotation_files(cfg, splits: Sequence[str]) -> List[Tuple[str, str, Optional[dict]]]:
    """``(config key, path, dataset config or None for an evaluator)`` of every local annotation file."""
    files: List[Tuple[str, str, Optional[dict]]] = []
    for split in splits:
        loader = _get(cfg, f'{split}_dataloader')
        if isinstance(loader, dict) and isinstance(loader.get('dataset'), dict):
            for key, ds in _iter_leaf_datasets(loader['dataset'], f'{split}_dataloader.dataset'):
                if ds.get('ann_file') and not _is_remote(ds['ann_file'], ds.get('backend_args')):
                    files.append((f'{key}.ann_file', _join(ds.get('data_root') or '', ds['ann_file']), ds))
        evaluator = _get(cfg, f'{split}_evaluator') if split != 'train' else None
        for metric in evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]:
            if isinstance(metric, dict) and metric.get('ann_file') and \
                    not _is_remote(metric['ann_file'], metric.get('backend_args')):
                files.append((f'{split}_evaluator.ann_file', metric['ann_file'], None))
    return files


def _names(items: Sequence[str], shown: int = 5) -> str:
    items = list(items)
    return ', '.join(items[:shown]) + (f', ... ({len(items)} in all)' if len(items) > shown else '')


def check_coco_contents(key: str, path: str, data: Any, ds: dict,
                        classes: Optional[Sequence[str]] = None) -> None:
    """Raise :class:`DatasetMismatchError` when a parsed COCO-format annotation file cannot feed the
    dataset ``ds``: it lists no image, none of its categories is one of ``classes`` (the dataset would
    be empty), or its first image is not under the dataset's image folder."""
    if not (isinstance(data, dict) and 'images' in data and 'categories' in data):
        return
    root = ds.get('data_root') or ''
    where = f'annotation file {path} ({key}, data_root {root!r})' if root else f'annotation file {path} ({key})'
    fix = ('Point data_root (e.g. COCO_ROOT=/path/to/coco/) at the dataset this config is for, or use a config '
           'written for this data (for the synthetic shapes: rexnet_backbones::det/retinanet_rexnet_synthetic.py).')
    if not data['images']:
        raise DatasetMismatchError(f'{where} lists no image. {fix}')
    names = [str(c.get('name')) for c in data['categories'] if isinstance(c, dict)]
    if classes and not set(names) & set(classes):
        raise DatasetMismatchError(
            f'{where}: none of its categories ({_names(names)}) is a class of the config\'s '
            f'{ds.get("type", "dataset")} ({_names(classes)}), so the dataset would be empty. {fix} '
            'Or set the dataset\'s metainfo=dict(classes=(...)) to these categories.')
    prefix = ds.get('data_prefix') or {}
    img_dir = _join(root, prefix.get('img', '')) if isinstance(prefix, dict) else root
    first = data['images'][0].get('file_name') if isinstance(data['images'][0], dict) else None
    if first and not _is_remote(img_dir, ds.get('backend_args')) and not osp.exists(osp.join(img_dir, first)):
        raise DatasetMismatchError(f'{where}: its first image {first} is not in {img_dir or "."}: the images '
                                   f'are elsewhere or missing. {fix}')


def check_annotation_files(cfg, splits: Sequence[str] = _SPLITS,
                           classes_of: Optional[Callable[[dict], Optional[Sequence[str]]]] = None) -> None:
    """Raise :class:`AnnotationFileError` naming a JSON annotation file that does not parse.

    Files up to :data:`FULL_PARSE_LIMIT` are parsed, and a COCO-format one must fit its dataset
    (:func:`check_coco_contents`; ``classes_of(dataset_cfg)`` gives the dataset's classes, when known);
    larger ones are checked for a JSON object's first and last characters (a truncated download fails
    that). Missing files are left to :func:`check_dataset_paths`.
    """
    parsed: dict = {}
    for key, path, ds in _annotation_files(cfg, splits):
        if not path.endswith('.json') or not osp.isfile(path):
            continue
        if path not in parsed:
            parsed[path] = _read_json(path, key)
        if ds is not None and parsed[path] is not None:
            check_coco_contents(key, path, parsed[path], ds, classes_of(ds) if classes_of else None)


def _read_json(path: str, key: str) -> Any:
    """The parsed file (None for one over :data:`FULL_PARSE_LIMIT`, only checked at both ends)."""
    import json
    size = osp.getsize(path)
    try:
        if size <= FULL_PARSE_LIMIT:
            with open(path, 'rb') as f:
                return json.loads(f.read())
        with open(path, 'rb') as f:
            head = f.read(64).lstrip()
            f.seek(max(size - 64, 0))
            tail = f.read().rstrip()
        if head[:1] not in (b'{', b'[') or tail[-1:] not in (b'}', b']'):
            raise ValueError('the file does not start and end like a JSON document (truncated?)')
        return None
    except (ValueError, UnicodeDecodeError) as e:
        raise AnnotationFileError(
            f"annotation file {path} ({key}) is not valid JSON: {e}.\n"
            'It is corrupt or truncated: download or convert it again (for the synthetic data, '
            'delete its folder and run `rexnet-make-synthetic-data`).') from None
