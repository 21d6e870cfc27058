"""Small image-classification sets for the trained design-space study, as uint8 tensors in memory.

* :func:`make_shape_classification`: generated, deterministic for a seed, nothing downloaded.
  Ten classes, shape x texture (:data:`CLS_CLASSES`): one shape (rectangle, ellipse, triangle,
  diamond, hexagon; 60-90% of the image wide, random aspect and position, a tilt of up to 10 degrees)
  plain or striped (random period, orientation and contrast), in a random colour at least 70 levels
  per channel away from the background under it, on a random gradient background with clutter
  (small blobs) and pixel noise. Neither colour nor position tells the class, so a network must see
  shape and texture: a 5-layer CNN reaches 4% error at 32x32 after 6 epochs of 8000 images, and
  the sampled networks' errors spread widely after one. Image ``i`` of a split depends only on
  ``(seed, split, i)``.
* :func:`load_image_folder`: an ImageFolder tree (``DIR/train/<class>/*``, ``DIR/val/<class>/*`` or
  ``DIR/test/<class>/*``; CIFAR-10 or ImageNet layout), resized to the study's input size and held in
  memory (meant for CIFAR-sized sets).
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..errors import InputNotFoundError, InvalidInputError
from .synthetic import SHAPES, _rasterize, _shape_polygon

__all__ = ['CLS_CLASSES', 'make_shape_classification', 'load_image_folder', 'IMAGE_EXTENSIONS']

_TEXTURES = ('plain', 'stripes')
CLS_CLASSES = tuple(f'{s}_{t}' for s in SHAPES for t in _TEXTURES)
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.ppm')
_SPLITS = {'train': 1, 'val': 2}


def _texture(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Zero (plain) or +-1 stripes of a random period and orientation."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(0.12, 0.2) * size
    a = (np.cos(angle) * xx + np.sin(angle) * yy) / period
    if kind == 'plain':
        return np.zeros((size, size))
    return np.where(np.floor(a) % 2 == 0, 1.0, -1.0)


def _render(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    shape, texture = CLS_CLASSES[label].split('_')
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / max(size - 1, 1)
    img = rng.uniform(40, 215, 3) + ramp[..., None] * rng.uniform(-60, 60, 3)
    for _ in range(int(rng.integers(0, 3))):  # clutter: small blobs of any colour
        r = rng.uniform(1.0, 0.12 * size)
        cx, cy = rng.uniform(0, size, 2)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    w = rng.uniform(0.6, 0.9) * size
    h = float(np.clip(w * rng.uniform(0.85, 1.18), 0.55 * size, 0.95 * size))
    x0, y0 = rng.uniform(0, size - w), rng.uniform(0, size - h)
    pts = _shape_polygon(shape, x0, y0, w, h, rng)
    t = np.deg2rad(rng.uniform(-10, 10))
    c = pts.mean(axis=0)
    pts = (pts - c) @ np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]) + c
    mask = _rasterize(pts, size, size)
    base = img[mask].mean(axis=0) if mask.any() else img.mean(axis=(0, 1))
    colour = (base + rng.choice([-1.0, 1.0], 3) * rng.uniform(70, 120, 3)) % 256  # never the background's colour
    fill = colour + rng.uniform(50, 80) * _texture(texture, size, rng)[..., None]
    img[mask] = fill[mask]
    img += rng.normal(0, rng.uniform(2, 12), img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def make_shape_classification(num: int, split: str = 'train', size: int = 32,
                              seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """``num`` images ``(N, 3, size, size)`` uint8 and labels ``(N,)`` int64 of :data:`CLS_CLASSES`,
    balanced (label ``i % 10``); image ``i`` depends only on ``(seed, split, i)``."""
    if split not in _SPLITS:
        raise InvalidInputError(f'split must be one of {tuple(_SPLITS)}, got {split!r}')
    if num < 1 or size < 8:
        raise InvalidInputError(f'need at least 1 image of at least 8x8 pixels, got {num} of {size}x{size}')
    labels = np.arange(num) % len(CLS_CLASSES)
    imgs = np.stack([_render(int(y), size, np.random.default_rng([seed, _SPLITS[split], i]))
                     for i, y in enumerate(labels)])
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels).long()


def _split_dirs(root: str) -> Dict[str, str]:
    if not os.path.isdir(root):
        raise InputNotFoundError(f'--data {root}: no such folder; give an ImageFolder tree DIR/train/<class>/*.png '
                                 'and DIR/val/<class>/*.png (or DIR/test), or leave out --data for the generated set')
    found = {s: os.path.join(root, d) for s, d in (('train', 'train'), ('val', 'val'), ('val', 'test'))
             if os.path.isdir(os.path.join(root, d))}
    if 'train' not in found or 'val' not in found:
        raise InputNotFoundError(f'--data {root}: expected the folders train/ and val/ (or test/), each with one '
                                 f'folder of images per class; found {sorted(os.listdir(root)) or "nothing"}')
    return found


def _load_split(folder: str, classes: Optional[List[str]], size: int,
                max_images: Optional[int]) -> Tuple[torch.Tensor, torch.Tensor, List[str]]:
    from PIL import Image, UnidentifiedImageError

    classes = classes or sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    files = [(os.path.join(folder, c, f), k) for k, c in enumerate(classes) if os.path.isdir(os.path.join(folder, c))
             for f in sorted(os.listdir(os.path.join(folder, c))) if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not files:
        raise InputNotFoundError(f'--data: no images ({", ".join(IMAGE_EXTENSIONS)}) in class folders under '
                                 f'{folder}; put each class\'s images in {folder}/<class>/')
    if max_images:
        files = files[::max(1, len(files) // max_images)][:max_images]
    imgs = []
    for path, _ in files:
        try:
            with Image.open(path) as im:
                imgs.append(np.asarray(im.convert('RGB').resize((size, size), Image.BILINEAR)))
        except (OSError, UnidentifiedImageError) as e:
            raise InvalidInputError(f'--data: cannot read image {path} ({e}); remove or replace it') from None
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor([k for _, k in files], dtype=torch.long), classes


def load_image_folder(root: str, size: int = 32, max_images: Optional[int] = None
                      ) -> Tuple[Tuple[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor], List[str]]:
    """``((train x, y), (val x, y), classes)`` of an ImageFolder tree, images resized to ``size``
    (uint8, in memory; ``max_images``: at most that many per split, evenly spaced)."""
    dirs = _split_dirs(root)
    xt, yt, classes = _load_split(dirs['train'], None, size, max_images)
    xv, yv, _ = _load_split(dirs['val'], classes, size, max_images)
    if len(classes) < 2:
        raise InvalidInputError(f'--data {root}: {len(classes)} class folder(s) under train/; a classifier needs >= 2')
    return (xt, yt), (xv, yv), classes
