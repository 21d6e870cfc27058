"""Small, deterministic synthetic datasets for smoke tests and demos.

Two generators, both pure numpy + Pillow, a few milliseconds per image:

* :func:`make_coco_detection` writes a COCO-style detection / instance-segmentation set::

      <root>/annotations/instances_train2017.json
      <root>/annotations/instances_val2017.json
      <root>/train2017/000000000001.jpg ...
      <root>/val2017/000000000001.jpg ...

  Every image shows 1-4 non-overlapping shapes (one class per shape kind, each with its own colour
  and texture) on a noisy gradient background. Each annotation has ``bbox`` (xywh, taken from the
  polygon), ``area`` (polygon area), ``iscrowd=0``, ``segmentation`` (one polygon) and
  ``category_id`` (1-based, as in COCO). mmdet's ``CocoDataset`` reads it with
  ``metainfo=dict(classes=DET_CLASSES)``::

      data_root = 'data/synthetic/coco/'
      train_dataloader = dict(dataset=dict(
          type='CocoDataset', data_root=data_root, metainfo=dict(classes=DET_CLASSES),
          ann_file='annotations/instances_train2017.json', data_prefix=dict(img='train2017/')))
      val_evaluator = dict(type='CocoMetric',
                           ann_file=data_root + 'annotations/instances_val2017.json')

* :func:`make_segmentation` writes the matching semantic-segmentation set in the ADE-like layout
  that mmseg's ``BaseSegDataset`` reads::

      <root>/img_dir/{train,val}/000001.jpg      (RGB, SEG_IMG_SUFFIX)
      <root>/ann_dir/{train,val}/000001.png      (8-bit palette PNG, SEG_MAP_SUFFIX)

  Label ids are ``0..len(SEG_CLASSES)-1`` (0 = background, ``k`` = ``DET_CLASSES[k-1]``) and the
  one-pixel outline of every shape is ``SEG_IGNORE_INDEX`` (255), so ``reduce_zero_label=False``.
  A minimal mmseg dataset config::

      dataset_type = 'BaseSegDataset'
      data_root = 'data/synthetic/seg'
      metainfo = dict(classes=SEG_CLASSES, palette=SEG_PALETTE)
      train_dataloader = dict(dataset=dict(
          type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
          img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=False,
          data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
          pipeline=[...]))
      val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])

Generation is done once: a complete set carries a ``DONE`` marker holding the generation
parameters, and a later call with the same parameters returns at once. Files are written into a
hidden sibling folder that is renamed into place only after the marker is written, so an
interrupted run leaves no half-written ``root`` and is simply redone next time.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import shutil
import uuid
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    'DEFAULT_DATA_ROOT', 'DET_SUBDIR', 'SEG_SUBDIR', 'SHAPES', 'DET_CLASSES', 'SEG_CLASSES',
    'SEG_PALETTE', 'SEG_IMG_SUFFIX', 'SEG_MAP_SUFFIX', 'SEG_IGNORE_INDEX', 'MARKER',
    'make_coco_detection', 'make_segmentation', 'is_complete'
]

DEFAULT_DATA_ROOT = 'data/synthetic'
DET_SUBDIR = 'coco'  # detection set: <DEFAULT_DATA_ROOT>/coco
SEG_SUBDIR = 'seg'  # segmentation set: <DEFAULT_DATA_ROOT>/seg

#: every shape kind the generator can draw; ``num_classes=n`` uses the first ``n``.
SHAPES = ('rectangle', 'ellipse', 'triangle', 'diamond', 'hexagon')
DET_CLASSES = SHAPES[:3]
SEG_CLASSES = ('background', ) + DET_CLASSES
SEG_IMG_SUFFIX = '.jpg'
SEG_MAP_SUFFIX = '.png'
SEG_IGNORE_INDEX = 255
MARKER = 'DONE'
_FORMAT_VERSION = 1

# class colours (RGB) and textures, well apart so that a few iterations of training see a signal
_SHAPE_COLOURS = {
    'rectangle': (215, 50, 50),
    'ellipse': (50, 190, 70),
    'triangle': (50, 90, 225),
    'diamond': (225, 195, 40),
    'hexagon': (190, 60, 210),
}
_SHAPE_TEXTURES = {
    'rectangle': 'solid',
    'ellipse': 'hstripes',
    'triangle': 'checker',
    'diamond': 'dstripes',
    'hexagon': 'dots',
}
_BACKGROUND_COLOUR = (0, 0, 0)
#: RGB palette for SEG_CLASSES (background + the first len(DET_CLASSES) shapes)
SEG_PALETTE = [list(_BACKGROUND_COLOUR)] + [list(_SHAPE_COLOURS[c]) for c in DET_CLASSES]

_DET_SPLITS = {'train': 'train2017', 'val': 'val2017'}
_KIND_IDS = {'det': 1, 'seg': 2}
_SPLIT_IDS = {'train': 1, 'val': 2}


# --------------------------------------------------------------------------------------------
# drawing
# --------------------------------------------------------------------------------------------
def _shape_polygon(kind: str, x0: float, y0: float, w: float, h: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Vertices (N, 2) of a shape whose bounding box is exactly ``(x0, y0, w, h)``."""
    x1, y1 = x0 + w, y0 + h
    if kind == 'rectangle':
        pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    elif kind == 'ellipse':
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        cx, cy = x0 + w / 2, y0 + h / 2
        pts = np.stack([cx + w / 2 * np.cos(t), cy + h / 2 * np.sin(t)], axis=1)
        # make the polygon touch its box exactly (cos/sin hit +-1 at t=0, pi/2, pi, 3pi/2)
        pts = np.clip(pts, [x0, y0], [x1, y1])
    elif kind == 'triangle':
        apex = x0 + float(rng.uniform(0.2, 0.8)) * w
        if rng.random() < 0.5:  # pointing up
            pts = [(apex, y0), (x1, y1), (x0, y1)]
        else:  # pointing down
            pts = [(x0, y0), (x1, y0), (apex, y1)]
    elif kind == 'diamond':
        cx, cy = x0 + w / 2, y0 + h / 2
        pts = [(cx, y0), (x1, cy), (cx, y1), (x0, cy)]
    elif kind == 'hexagon':
        cy = y0 + h / 2
        pts = [(x0 + w / 4, y0), (x0 + 3 * w / 4, y0), (x1, cy), (x0 + 3 * w / 4, y1),
               (x0 + w / 4, y1), (x0, cy)]
    else:  # pragma: no cover - guarded by callers
        raise ValueError(f'unknown shape {kind!r}')
    return np.round(np.asarray(pts, dtype=np.float64), 2)


def _polygon_area(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _rasterize(pts: np.ndarray, height: int, width: int) -> np.ndarray:
    canvas = Image.new('L', (width, height), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in pts.tolist()], fill=1)
    return np.asarray(canvas, dtype=bool)


def _texture(kind: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Brightness modulation in [-1, 1] of shape (H, W)."""
    yy, xx = np.mgrid[0:height, 0:width]
    pattern = _SHAPE_TEXTURES[kind]
    period = int(rng.integers(4, 8))
    if pattern == 'solid':
        return np.zeros((height, width))
    if pattern == 'hstripes':
        return np.where((yy // period) % 2 == 0, 1.0, -1.0)
    if pattern == 'checker':
        return np.where(((yy // period) + (xx // period)) % 2 == 0, 1.0, -1.0)
    if pattern == 'dstripes':
        return np.where(((xx + yy) // period) % 2 == 0, 1.0, -1.0)
    # dots
    return np.where(((yy % period) < 2) & ((xx % period) < 2), 1.0, -0.3)


def _background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(70, 170, size=3)
    tint = rng.uniform(-25, 25, size=3)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width]
    ramp = (np.cos(angle) * xx / max(width - 1, 1) + np.sin(angle) * yy / max(height - 1, 1))
    img = base[None, None, :] + ramp[..., None] * tint[None, None, :] * 2
    img += rng.normal(0, 14, size=(height, width, 3))
    return img


def _place_boxes(num: int, height: int, width: int,
                 rng: np.random.Generator) -> List[Tuple[float, float, float, float]]:
    """Up to ``num`` non-overlapping boxes (x0, y0, w, h), at least one, all inside the image."""
    short = min(height, width)
    lo, hi = max(8.0, 0.14 * short), max(10.0, 0.45 * short)
    margin = 2.0
    boxes: List[Tuple[float, float, float, float]] = []
    for _ in range(num):
        for _attempt in range(60):
            w = float(rng.uniform(lo, hi))
            h = float(np.clip(w * rng.uniform(0.6, 1.6), lo, hi))
            x0 = float(rng.uniform(margin, width - margin - w))
            y0 = float(rng.uniform(margin, height - margin - h))
            gap = 3.0
            if all(x0 + w + gap <= bx or bx + bw + gap <= x0 or y0 + h + gap <= by
                   or by + bh + gap <= y0 for bx, by, bw, bh in boxes):
                boxes.append((round(x0, 2), round(y0, 2), round(w, 2), round(h, 2)))
                break
    if not boxes:  # tiny images: fall back to one centred box
        w = h = max(4.0, short / 2)
        boxes.append(((width - w) / 2, (height - h) / 2, w, h))
    return boxes


def _render_image(height: int, width: int, classes: Sequence[str], first_class: int,
                  rng: np.random.Generator, class_colours: bool = True):
    """Returns (rgb uint8 image, list of (class_index, polygon, raster mask)); ``class_colours=False``:
    every shape in a random colour (the class must be told from the shape alone)."""
    img = _background(height, width, rng)
    boxes = _place_boxes(int(rng.integers(1, 5)), height, width, rng)
    objects = []
    for i, (x0, y0, w, h) in enumerate(boxes):
        cls = first_class if i == 0 else int(rng.integers(0, len(classes)))
        kind = classes[cls]
        pts = _shape_polygon(kind, x0, y0, w, h, rng)
        mask = _rasterize(pts, height, width)
        base = _SHAPE_COLOURS[kind] if class_colours else rng.uniform(40, 215, 3)
        colour = np.asarray(base, dtype=np.float64) + rng.uniform(-20, 20, 3)
        layer = colour[None, None, :] + 28 * _texture(kind, height, width, rng)[..., None]
        img[mask] = layer[mask]
        objects.append((cls, pts, mask))
    img += rng.normal(0, 5, size=img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), objects


def _image_rng(seed: int, kind: str, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _KIND_IDS[kind], _SPLIT_IDS[split], int(index)])


# --------------------------------------------------------------------------------------------
# generate-once machinery
# --------------------------------------------------------------------------------------------
def _read_marker(root: str) -> Optional[dict]:
    try:
        with open(osp.join(root, MARKER), encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def is_complete(root: str, params: Optional[dict] = None) -> bool:
    """True when ``root`` holds a finished synthetic set (generated with ``params`` if given)."""
    marker = _read_marker(root)
    if marker is None or marker.get('version') != _FORMAT_VERSION:
        return False
    if params is not None and marker.get('params') != params:
        return False
    return all(osp.isfile(osp.join(root, rel)) for rel in marker.get('files', []))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove_stale_partials(root: str) -> None:
    parent, name = osp.split(osp.abspath(root))
    if not osp.isdir(parent):
        return
    prefix = f'.{name}.partial-'
    for entry in os.listdir(parent):
        if not entry.startswith(prefix):
            continue
        try:
            pid = int(entry[len(prefix):].split('-')[0])
        except ValueError:
            continue
        if not _pid_alive(pid):
            shutil.rmtree(osp.join(parent, entry), ignore_errors=True)


def _generate_once(root: str, kind: str, params: dict, writer, force: bool) -> dict:
    """Run ``writer(tmp_dir) -> (files, summary)`` unless ``root`` is already complete."""
    root = osp.abspath(root)
    if not force and is_complete(root, params):
        marker = _read_marker(root)
        return dict(marker['summary'], root=root, skipped=True)
    if osp.isdir(root) and os.listdir(root) and _read_marker(root) is None:
        from ..errors import OutputExistsError
        raise OutputExistsError(
            f'{root} exists, is not empty and has no {MARKER} marker of a synthetic {kind} set; '
            'refusing to overwrite it. Remove it or choose another output folder.')
    _remove_stale_partials(root)
    parent, name = osp.split(root)
    os.makedirs(parent, exist_ok=True)
    tmp = osp.join(parent, f'.{name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}')
    os.makedirs(tmp)
    try:
        files, summary = writer(tmp)
        marker = dict(version=_FORMAT_VERSION, kind=kind, params=params, files=files,
                      summary=summary)
        with open(osp.join(tmp, MARKER), 'w', encoding='utf-8') as f:
            json.dump(marker, f)
        if osp.isdir(root):
            if not force and is_complete(root, params):  # another process finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return dict(summary, root=root, skipped=True)
            # an older/different synthetic set (it has our marker) or an empty folder
            shutil.rmtree(root)
        try:
            os.rename(tmp, root)
        except OSError:
            if is_complete(root, params):  # lost a race against an identical run
                shutil.rmtree(tmp, ignore_errors=True)
                return dict(summary, root=root, skipped=True)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dict(summary, root=root, skipped=False)


def _check_args(num_train: int, num_val: int, img_size, num_classes: int):
    from ..errors import InvalidInputError  # a ValueError
    if num_train < 1 or num_val < 1:
        raise InvalidInputError(f'need at least one image per split, got {num_train=} {num_val=}')
    h, w = (int(v) for v in img_size)
    if h < 16 or w < 16:
        raise InvalidInputError(f'img_size must be at least 16x16, got {img_size}')
    if not 1 <= num_classes <= len(SHAPES):
        raise InvalidInputError(f'num_classes must be in 1..{len(SHAPES)}, got {num_classes}')
    return h, w


# --------------------------------------------------------------------------------------------
# public generators
# --------------------------------------------------------------------------------------------
def make_coco_detection(root: str = osp.join(DEFAULT_DATA_ROOT, DET_SUBDIR),
                        num_train: int = 32,
                        num_val: int = 8,
                        img_size: Tuple[int, int] = (128, 128),
                        num_classes: int = 3,
                        seed: int = 0,
                        force: bool = False) -> dict:
    """Write (once) a COCO-layout detection set under ``root``; see the module docstring.

    Args:
        root: output folder (``annotations/``, ``train2017/``, ``val2017/`` go inside).
        num_train, num_val: images per split.
        img_size: ``(H, W)`` of every image.
        num_classes: number of shape classes, the first ``num_classes`` of :data:`SHAPES`
            (default 3, i.e. :data:`DET_CLASSES`). Image ``i`` of a split always contains class
            ``i % num_classes``, so every class occurs in a split of ``>= num_classes`` images.
        seed: the output depends only on the arguments and this seed.
        force: regenerate even if a complete set with the same parameters exists.

    Returns:
        dict with ``root``, ``skipped`` (True if an existing set was reused), ``classes`` and, per
        split, ``ann_file``, ``img_dir``, ``images`` and ``annotations`` counts.
    """
    height, width = _check_args(num_train, num_val, img_size, num_classes)
    classes = SHAPES[:num_classes]
    params = dict(num_train=int(num_train), num_val=int(num_val), img_size=[height, width],
                  num_classes=int(num_classes), seed=int(seed))

    def writer(out: str):
        files: List[str] = []
        summary: Dict = dict(kind='det', classes=list(classes), splits={})
        os.makedirs(osp.join(out, 'annotations'))
        categories = [dict(id=i + 1, name=c, supercategory='shape') for i, c in enumerate(classes)]
        for split, count in (('train', num_train), ('val', num_val)):
            img_dir = _DET_SPLITS[split]
            os.makedirs(osp.join(out, img_dir))
            images, annotations = [], []
            for index in range(count):
                rng = _image_rng(seed, 'det', split, index)
                img, objects = _render_image(height, width, classes, index % num_classes, rng)
                image_id = index + 1
                file_name = f'{image_id:012d}.jpg'
                Image.fromarray(img).save(osp.join(out, img_dir, file_name), quality=95)
                files.append(f'{img_dir}/{file_name}')
                images.append(dict(id=image_id, file_name=file_name, height=height, width=width))
                for cls, pts, _mask in objects:
                    x0, y0 = pts.min(axis=0)
                    x1, y1 = pts.max(axis=0)
                    annotations.append(
                        dict(id=len(annotations) + 1,
                             image_id=image_id,
                             category_id=cls + 1,
                             bbox=[round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)],
                             area=round(_polygon_area(pts), 2),
                             segmentation=[[round(float(v), 2) for v in pts.reshape(-1)]],
                             iscrowd=0))
            coco = dict(
                info=dict(description='rexnet_backbones synthetic shapes', version='1.0',
                          year=2024, seed=int(seed)),
                licenses=[],
                images=images,
                annotations=annotations,
                categories=categories)
            ann_rel = f'annotations/instances_{img_dir}.json'
            with open(osp.join(out, ann_rel), 'w', encoding='utf-8') as f:
                json.dump(coco, f)
            files.append(ann_rel)
            summary['splits'][split] = dict(ann_file=ann_rel, img_dir=img_dir + '/',
                                            images=len(images), annotations=len(annotations))
        return files, summary

    return _generate_once(root, 'det', params, writer, force)


def make_segmentation(root: str = osp.join(DEFAULT_DATA_ROOT, SEG_SUBDIR),
                      num_train: int = 32,
                      num_val: int = 8,
                      img_size: Tuple[int, int] = (128, 128),
                      num_classes: int = 3,
                      seed: int = 0,
                      ignore_boundary: bool = True,
                      force: bool = False,
                      class_colours: bool = True) -> dict:
    """Write (once) an mmseg ``BaseSegDataset`` set under ``root``; see the module docstring.

    ``class_colours=False`` makes the task harder: each shape gets a random colour instead of its
    class's, so colour no longer tells the class and a network must segment by shape (with
    ``num_classes=5`` the diamond, hexagon and ellipse are close).

    Label maps use ids ``0`` (background) and ``1..num_classes`` (the shapes); with
    ``ignore_boundary`` the one-pixel outline of each shape is :data:`SEG_IGNORE_INDEX`.
    Classes are ``('background',) + SHAPES[:num_classes]`` (:data:`SEG_CLASSES` for the default).

    Returns:
        dict with ``root``, ``skipped``, ``classes``, ``palette`` and, per split, ``img_dir``,
        ``ann_dir`` and ``images``.
    """
    height, width = _check_args(num_train, num_val, img_size, num_classes)
    shapes = SHAPES[:num_classes]
    classes = ('background', ) + shapes
    palette = [list(_BACKGROUND_COLOUR)] + [list(_SHAPE_COLOURS[c]) for c in shapes]
    params = dict(num_train=int(num_train), num_val=int(num_val), img_size=[height, width],
                  num_classes=int(num_classes), seed=int(seed),
                  ignore_boundary=bool(ignore_boundary))
    if not class_colours:  # only then: sets written before the option keep their marker
        params['class_colours'] = False
    flat_palette = [v for rgb in palette for v in rgb]
    flat_palette += [0] * (3 * 256 - len(flat_palette))
    flat_palette[3 * SEG_IGNORE_INDEX:3 * SEG_IGNORE_INDEX + 3] = [255, 255, 255]

    def writer(out: str):
        files: List[str] = []
        summary: Dict = dict(kind='seg', classes=list(classes), palette=palette, splits={},
                             img_suffix=SEG_IMG_SUFFIX, seg_map_suffix=SEG_MAP_SUFFIX,
                             ignore_index=SEG_IGNORE_INDEX)
        for split, count in (('train', num_train), ('val', num_val)):
            img_dir, ann_dir = f'img_dir/{split}', f'ann_dir/{split}'
            os.makedirs(osp.join(out, img_dir))
            os.makedirs(osp.join(out, ann_dir))
            for index in range(count):
                rng = _image_rng(seed, 'seg', split, index)
                img, objects = _render_image(height, width, shapes, index % num_classes, rng, class_colours)
                label = np.zeros((height, width), dtype=np.uint8)
                for cls, _pts, mask in objects:
                    label[mask] = cls + 1
                    if ignore_boundary:
                        inner = mask.copy()
                        inner[1:, :] &= mask[:-1, :]
                        inner[:-1, :] &= mask[1:, :]
                        inner[:, 1:] &= mask[:, :-1]
                        inner[:, :-1] &= mask[:, 1:]
                        label[mask & ~inner] = SEG_IGNORE_INDEX
                stem = f'{index + 1:06d}'
                Image.fromarray(img).save(osp.join(out, img_dir, stem + SEG_IMG_SUFFIX),
                                          quality=95)
                seg = Image.frombytes('P', (width, height), label.tobytes())
                seg.putpalette(flat_palette)
                seg.save(osp.join(out, ann_dir, stem + SEG_MAP_SUFFIX))
                files += [f'{img_dir}/{stem}{SEG_IMG_SUFFIX}', f'{ann_dir}/{stem}{SEG_MAP_SUFFIX}']
            summary['splits'][split] = dict(img_dir=img_dir, ann_dir=ann_dir, images=count)
        return files, summary

    return _generate_once(root, 'seg', params, writer, force)
