"""ReXNet architecture names (timm names) and their official clovaai release names.

A leaf module (no imports from this package) so that the timm models, the checkpoint conversion and
the mm backbone can all use it without importing each other.
"""
from __future__ import annotations

from typing import Dict, Optional

__all__ = ['REXNET_ARCHS', 'LITE_ARCHS', 'V1_ARCHS']

#: every ReXNet name this package knows, with the official release name (None: no official file)
REXNET_ARCHS: Dict[str, Optional[str]] = {
    'rexnet_090': None,
    'rexnet_100': 'rexnetv1_1.0',
    'rexnet_130': 'rexnetv1_1.3',
    'rexnet_150': 'rexnetv1_1.5',
    'rexnet_200': 'rexnetv1_2.0',
    'rexnet_220': None,
    'rexnet_300': 'rexnetv1_3.0',
    'rexnet_lite_100': 'rexnetv1_lite_1.0',
    'rexnet_lite_130': 'rexnetv1_lite_1.3',
    'rexnet_lite_150': 'rexnetv1_lite_1.5',
    'rexnet_lite_200': 'rexnetv1_lite_2.0',
}

#: ReXNet-lite names (registered by this package)
LITE_ARCHS = tuple(a for a in REXNET_ARCHS if a.startswith('rexnet_lite_'))
#: ReXNet v1 names (timm's own, plus ``rexnet_090``/``rexnet_220`` registered by this package)
V1_ARCHS = tuple(a for a in REXNET_ARCHS if a not in LITE_ARCHS)

