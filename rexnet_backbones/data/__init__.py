"""Data helpers: deterministic synthetic datasets and up-front dataset checks for the tools.

* :mod:`.synthetic` -- :func:`make_coco_detection` (COCO layout, for mmdet) and
  :func:`make_segmentation` (``img_dir``/``ann_dir`` layout, for mmseg); CLI:
  ``python tools/make_synthetic_data.py``.
* :mod:`.checks` -- :func:`check_dataset_paths` raises :class:`DatasetNotFoundError` with a
  helpful message when a config's dataset paths do not exist.

Neither module imports OpenMMLab packages.
"""
from .checks import (MissingPath, check_annotation_files, check_dataset_paths,  # noqa: F401
                     find_missing_dataset_paths, format_missing_dataset_message,
                     splits_for_training)
from .synthetic import (DEFAULT_DATA_ROOT, DET_CLASSES, DET_SUBDIR, SEG_CLASSES,  # noqa: F401
                        SEG_IGNORE_INDEX, SEG_IMG_SUFFIX, SEG_MAP_SUFFIX, SEG_PALETTE,
                        SEG_SUBDIR, SHAPES, is_complete, make_coco_detection, make_segmentation)

__all__ = [
    'DEFAULT_DATA_ROOT', 'DET_CLASSES', 'DET_SUBDIR', 'SEG_CLASSES', 'SEG_IGNORE_INDEX',
    'SEG_IMG_SUFFIX', 'SEG_MAP_SUFFIX', 'SEG_PALETTE', 'SEG_SUBDIR', 'SHAPES', 'is_complete',
    'make_coco_detection', 'make_segmentation', 'check_annotation_files', 'MissingPath',
    'check_dataset_paths', 'find_missing_dataset_paths', 'format_missing_dataset_message',
    'splits_for_training'
]
