"""Where our configs are, and how a tool turns a config argument into a file.

The configs travel with the package as ``rexnet_backbones/.mim/configs`` (the place OpenMMLab packages
use): in a checkout that is a symlink to the repository's ``configs/``, in a wheel a copy (see
``setup.py``). Nothing here builds a path from the repository root, and nothing imports mmengine.

A config argument (:func:`resolve_config`) is one of

* an existing file, used as given;
* ``mmdet::path`` / ``mmseg::path`` (any installed package with ``.mim/configs``), as mmengine's
  ``Config.fromfile`` resolves it;
* one of ours by short name: ``rexnet_backbones::det/retinanet_rexnet.py``, or, when no such local
  file exists, ``det/retinanet_rexnet.py`` or ``configs/det/retinanet_rexnet.py`` (the docs'
  commands then work outside a checkout too).

mmengine 0.10's ``pkg::path`` only knows OpenMMLab's packages, so our short names are resolved here,
before ``Config.fromfile``; ``_base_`` references inside our configs are relative and resolve in both.
"""
from __future__ import annotations

import difflib
import importlib.util
import os
import os.path as osp
from typing import List

from .errors import ConfigNotFoundError

__all__ = ['PACKAGE', 'configs_dir', 'config_file', 'list_configs',
           'is_config_spec', 'resolve_config']

PACKAGE = 'rexnet_backbones'
_MIM_CONFIGS = osp.join('.mim', 'configs')
#: the package's own data folder (the one place where a path is built from this file's location)
_OUR_CONFIGS = osp.join(osp.dirname(osp.abspath(__file__)), _MIM_CONFIGS)


def configs_dir() -> str:
    """The folder holding this package's configs (``<package>/.mim/configs``)."""
    if not osp.isdir(_OUR_CONFIGS):
        raise ConfigNotFoundError(
            f'the configs of {PACKAGE} are not installed: no folder {_OUR_CONFIGS}. Reinstall the package '
            "(pip install . or pip install -e .), or give a config file's path.")
    return _OUR_CONFIGS


def list_configs() -> List[str]:
    """Short names (``det/retinanet_rexnet.py``, ...) of all our configs, ``_base_`` files excluded."""
    root = configs_dir()
    names = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != '_base_' and not d.startswith(('.', '__')))
        names += [osp.relpath(osp.join(folder, f), root).replace(os.sep, '/')
                  for f in sorted(files) if f.endswith('.py')]
    return names


def _short_name(name: str) -> str:
    name = name.replace('\\', '/')
    if name.startswith(f'{PACKAGE}::'):
        name = name.split('::', 1)[1]
    if name.startswith('./'):
        name = name[2:]
    if name.startswith('configs/'):
        name = name[len('configs/'):]
    return name


def _installed(rel: str) -> str:
    return osp.join(configs_dir(), *rel.split('/'))


def _did_you_mean(rel: str) -> str:
    close = difflib.get_close_matches(rel, list_configs(), n=3, cutoff=0.6)
    return f' Did you mean {", ".join(close)}?' if close else ''


def config_file(name: str) -> str:
    """The installed path of one of our configs, e.g. ``config_file('det/retinanet_rexnet.py')``.

    ``name`` is relative to the configs folder; a ``configs/`` or ``rexnet_backbones::`` prefix is
    accepted. Raises :class:`ConfigNotFoundError` naming the file looked for and close matches.
    """
    rel = _short_name(name)
    path = _installed(rel)
    if osp.isfile(path):
        return path
    raise ConfigNotFoundError(f'config file not found: {name} (no {rel} among the configs of {PACKAGE} '
                              f'in {configs_dir()}).{_did_you_mean(rel)}')


def _package_config(package: str, rel: str, spec: str) -> str:
    """``<package>/.mim/configs/<rel>`` of an installed package, as mmengine resolves ``pkg::path``."""
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise ConfigNotFoundError(f'config file not found: {spec} (package {package!r} is not installed)')
    tried = []
    for root in found.submodule_search_locations:
        path = osp.join(root, _MIM_CONFIGS, rel)
        if osp.isfile(path):
            return path
        tried.append(path)
    raise ConfigNotFoundError(f'config file not found: {spec} (no {rel} in the configs of the installed '
                              f'{package}: looked for {", ".join(tried)})')


def is_config_spec(spec: str) -> bool:
    """A config (a file, ``package::path`` or a short name) rather than a timm model name."""
    return '::' in spec or spec.endswith('.py') or os.sep in spec or '/' in spec or osp.isfile(spec)


def resolve_config(spec: str) -> str:
    """The config file a tool's config argument names (see the module docstring for the forms).

    A local file wins over a short name of the same spelling. Raises :class:`ConfigNotFoundError`
    (a ``FileNotFoundError`` and a ``ValueError``) saying what was looked for.
    """
    if osp.isfile(spec):
        return spec
    if '::' in spec:
        package, rel = spec.split('::', 1)
        if package == PACKAGE:
            return config_file(spec)
        return _package_config(package, rel, spec)
    rel = _short_name(spec)
    hint = ''
    if spec.endswith('.py') and not osp.isabs(spec) and osp.isdir(_OUR_CONFIGS):
        if osp.isfile(_installed(rel)):
            return _installed(rel)
        hint = _did_you_mean(rel)
    raise ConfigNotFoundError(
        f'config file not found: {spec} (not a file, nor one of the configs of {PACKAGE}; give a path, '
        f'a short name such as {PACKAGE}::det/retinanet_rexnet.py, or an OpenMMLab config as '
        f'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py).{hint}')
