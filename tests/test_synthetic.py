"""Synthetic data: COCO detection set, mmseg segmentation set, generate-once logic, CLI."""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from _helpers_tools import REPO_ROOT, TOOLS, run_tool_in_process
from rexnet_backbones.data import synthetic
from rexnet_backbones.data.synthetic import (
    DEFAULT_DATA_ROOT, DET_CLASSES, MARKER, SEG_CLASSES, SEG_IGNORE_INDEX, SEG_IMG_SUFFIX,
    SEG_MAP_SUFFIX, make_coco_detection, make_segmentation)

H, W = 96, 112  # not square, to catch height/width mix-ups
NUM_TRAIN, NUM_VAL = 12, 6


@pytest.fixture(scope='module')
def det_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synth') / 'coco')
    result = make_coco_detection(root, num_train=NUM_TRAIN, num_val=NUM_VAL, img_size=(H, W),
                                 seed=3)
    assert result['skipped'] is False
    return root


@pytest.fixture(scope='module')
def seg_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synth') / 'seg')
    result = make_segmentation(root, num_train=NUM_TRAIN, num_val=NUM_VAL, img_size=(H, W), seed=3)
    assert result['skipped'] is False
    return root


def _coco(root, split):
    from pycocotools.coco import COCO
    return COCO(osp.join(root, 'annotations', f'instances_{split}2017.json'))


def test_constants():
    assert DEFAULT_DATA_ROOT == 'data/synthetic'
    assert DET_CLASSES == ('rectangle', 'ellipse', 'triangle')
    assert SEG_CLASSES == ('background', ) + DET_CLASSES
    assert len(synthetic.SEG_PALETTE) == len(SEG_CLASSES)
    assert len({tuple(c) for c in synthetic.SEG_PALETTE}) == len(SEG_CLASSES)


@pytest.mark.parametrize('split,count', [('train', NUM_TRAIN), ('val', NUM_VAL)])
def test_coco_layout_loads_with_pycocotools(det_root, split, count):
    pytest.importorskip('pycocotools')
    coco = _coco(det_root, split)
    assert len(coco.getImgIds()) == count
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(DET_CLASSES)
    for img in coco.loadImgs(coco.getImgIds()):
        path = osp.join(det_root, f'{split}2017', img['file_name'])
        with Image.open(path) as im:
            assert im.size == (img['width'], img['height']) == (W, H)
            assert im.mode == 'RGB'
        assert 1 <= len(coco.getAnnIds(imgIds=img['id'])) <= 4
    anns = coco.loadAnns(coco.getAnnIds())
    assert len({a['id'] for a in anns}) == len(anns)
    # every class occurs in both splits
    assert {a['category_id'] for a in anns} == set(coco.getCatIds())


@pytest.mark.parametrize('split', ['train', 'val'])
def test_boxes_inside_images_and_masks_match_boxes(det_root, split):
    pytest.importorskip('pycocotools')
    coco = _coco(det_root, split)
    sizes = []
    for ann in coco.loadAnns(coco.getAnnIds()):
        img = coco.loadImgs(ann['image_id'])[0]
        x, y, w, h = ann['bbox']
        assert ann['iscrowd'] == 0
        assert w > 1 and h > 1
        assert 0 <= x and 0 <= y and x + w <= img['width'] and y + h <= img['height']
        assert isinstance(ann['segmentation'], list) and len(ann['segmentation'][0]) >= 6
        mask = coco.annToMask(ann)
        assert mask.shape == (img['height'], img['width'])
        ys, xs = np.nonzero(mask)
        assert len(xs) > 0
        # the rasterised polygon fills its box (to rasterisation precision)
        assert abs(xs.min() - x) <= 1.5 and abs(xs.max() + 1 - (x + w)) <= 1.5
        assert abs(ys.min() - y) <= 1.5 and abs(ys.max() + 1 - (y + h)) <= 1.5
        assert mask.sum() == pytest.approx(ann['area'], rel=0.1, abs=6)
        assert ann['area'] <= w * h + 0.05  # (values are rounded to 0.01)
        sizes.append(w * h)
    assert max(sizes) > 2 * min(sizes)  # varied object sizes


def test_objects_in_an_image_do_not_overlap(det_root):
    coco = _coco(det_root, 'train')
    for img_id in coco.getImgIds():
        masks = [coco.annToMask(a) for a in coco.loadAnns(coco.getAnnIds(imgIds=img_id))]
        assert np.sum(masks, axis=0).max() <= 1


def test_objects_differ_from_background(det_root):
    """The shapes are drawn where the annotations say (colour inside != around)."""
    coco = _coco(det_root, 'val')
    for ann in coco.loadAnns(coco.getAnnIds()):
        img = coco.loadImgs(ann['image_id'])[0]
        pixels = np.asarray(Image.open(osp.join(det_root, 'val2017', img['file_name'])),
                            dtype=np.float64)
        mask = coco.annToMask(ann).astype(bool)
        x, y, w, h = (int(round(v)) for v in ann['bbox'])
        ring = np.zeros_like(mask)
        ring[max(y - 3, 0):y + h + 3, max(x - 3, 0):x + w + 3] = True
        ring[y:y + h, x:x + w] = False
        inside = pixels[mask].mean(axis=0)
        outside = pixels[ring].mean(axis=0)
        assert np.abs(inside - outside).max() > 15


def test_mmdet_coco_dataset_reads_it(det_root):
    pytest.importorskip('mmdet')
    from mmdet.datasets import CocoDataset
    ds = CocoDataset(
        data_root=det_root,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        metainfo=dict(classes=DET_CLASSES),
        filter_cfg=None,
        pipeline=[],
        test_mode=False)
    assert len(ds) == NUM_TRAIN
    labels = set()
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        assert osp.isfile(info['img_path'])
        for inst in info['instances']:
            x1, y1, x2, y2 = inst['bbox']
            assert 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H
            labels.add(inst['bbox_label'])
            assert inst['mask']  # polygons made it through
    assert labels == set(range(len(DET_CLASSES)))


def _read_json(path):
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def _images(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in sorted(files):
            if name.endswith(('.jpg', '.png')):
                out[osp.relpath(osp.join(dirpath, name), root)] = np.asarray(
                    Image.open(osp.join(dirpath, name)))
    return out


def test_det_is_deterministic_for_a_seed(tmp_path):
    kw = dict(num_train=4, num_val=3, img_size=(64, 80))
    a = make_coco_detection(str(tmp_path / 'a'), seed=7, **kw)
    b = make_coco_detection(str(tmp_path / 'b'), seed=7, **kw)
    make_coco_detection(str(tmp_path / 'c'), seed=8, **kw)
    for split in ('train', 'val'):
        rel = a['splits'][split]['ann_file']
        assert _read_json(tmp_path / 'a' / rel) == _read_json(tmp_path / 'b' / rel)
        assert _read_json(tmp_path / 'a' / rel)['annotations'] != \
            _read_json(tmp_path / 'c' / rel)['annotations']
    ia, ib, ic = (_images(str(tmp_path / n)) for n in 'abc')
    assert ia.keys() == ib.keys() == ic.keys() and len(ia) == 7
    assert all(np.array_equal(ia[k], ib[k]) for k in ia)
    assert not all(np.array_equal(ia[k], ic[k]) for k in ia)
    assert b['splits'] == a['splits']


def test_seg_is_deterministic_for_a_seed(tmp_path):
    kw = dict(num_train=3, num_val=2, img_size=(64, 64))
    make_segmentation(str(tmp_path / 'a'), seed=1, **kw)
    make_segmentation(str(tmp_path / 'b'), seed=1, **kw)
    make_segmentation(str(tmp_path / 'c'), seed=2, **kw)
    ia, ib, ic = (_images(str(tmp_path / n)) for n in 'abc')
    assert len(ia) == 10 and ia.keys() == ib.keys() == ic.keys()
    assert all(np.array_equal(ia[k], ib[k]) for k in ia)
    assert not all(np.array_equal(ia[k], ic[k]) for k in ia)


@pytest.mark.parametrize('split,count', [('train', NUM_TRAIN), ('val', NUM_VAL)])
def test_seg_maps_readable_and_in_range(seg_root, split, count):
    img_dir = osp.join(seg_root, 'img_dir', split)
    ann_dir = osp.join(seg_root, 'ann_dir', split)
    imgs = sorted(f for f in os.listdir(img_dir) if f.endswith(SEG_IMG_SUFFIX))
    anns = sorted(f for f in os.listdir(ann_dir) if f.endswith(SEG_MAP_SUFFIX))
    assert len(imgs) == len(anns) == count
    assert [f[:-len(SEG_IMG_SUFFIX)] for f in imgs] == [f[:-len(SEG_MAP_SUFFIX)] for f in anns]
    seen = set()
    for img_name, ann_name in zip(imgs, anns):
        img = np.asarray(Image.open(osp.join(img_dir, img_name)))
        label = np.asarray(Image.open(osp.join(ann_dir, ann_name)))
        assert img.shape == (H, W, 3)
        assert label.shape == (H, W) and label.dtype == np.uint8
        values = set(np.unique(label).tolist())
        assert values <= set(range(len(SEG_CLASSES))) | {SEG_IGNORE_INDEX}
        assert 0 in values and SEG_IGNORE_INDEX in values
        assert (label == 0).mean() > 0.3  # mostly background
        seen |= values
    assert seen == set(range(len(SEG_CLASSES))) | {SEG_IGNORE_INDEX}


def test_seg_maps_read_by_mmcv_as_mmseg_does(seg_root):
    mmcv = pytest.importorskip('mmcv')
    path = osp.join(seg_root, 'ann_dir', 'train', '000001' + SEG_MAP_SUFFIX)
    with open(path, 'rb') as f:
        label = mmcv.imfrombytes(f.read(), flag='unchanged', backend='pillow')
    assert np.array_equal(label, np.asarray(Image.open(path)))


def test_mmseg_dataset_reads_it(seg_root):
    pytest.importorskip('mmseg')
    from mmseg.datasets import BaseSegDataset
    ds = BaseSegDataset(
        data_root=seg_root,
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        img_suffix=SEG_IMG_SUFFIX,
        seg_map_suffix=SEG_MAP_SUFFIX,
        metainfo=dict(classes=SEG_CLASSES, palette=synthetic.SEG_PALETTE),
        pipeline=[])
    assert len(ds) == NUM_VAL
    info = ds.get_data_info(0)
    assert osp.isfile(info['img_path']) and osp.isfile(info['seg_map_path'])
    assert ds.metainfo['classes'] == SEG_CLASSES


def test_regeneration_is_skipped_when_complete(tmp_path):
    root = str(tmp_path / 'coco')
    kw = dict(num_train=3, num_val=2, img_size=(48, 48), seed=0)
    first = make_coco_detection(root, **kw)
    assert first['skipped'] is False and osp.isfile(osp.join(root, MARKER))
    probe = osp.join(root, 'train2017', '000000000001.jpg')
    stamp = os.stat(probe).st_mtime_ns
    second = make_coco_detection(root, **kw)
    assert second['skipped'] is True
    assert os.stat(probe).st_mtime_ns == stamp
    assert second['splits'] == first['splits']
    # the same for the segmentation set
    seg = str(tmp_path / 'seg')
    assert make_segmentation(seg, **kw)['skipped'] is False
    assert make_segmentation(seg, **kw)['skipped'] is True


def test_regenerated_when_params_change_incomplete_or_forced(tmp_path):
    root = str(tmp_path / 'coco')
    kw = dict(num_val=2, img_size=(48, 48), seed=0)
    make_coco_detection(root, num_train=3, **kw)
    # other parameters -> regenerated with them
    result = make_coco_detection(root, num_train=5, **kw)
    assert result['skipped'] is False
    assert len(os.listdir(osp.join(root, 'train2017'))) == 5
    # a file went missing -> regenerated
    os.remove(osp.join(root, 'train2017', '000000000002.jpg'))
    assert make_coco_detection(root, num_train=5, **kw)['skipped'] is False
    assert osp.isfile(osp.join(root, 'train2017', '000000000002.jpg'))
    # force
    assert make_coco_detection(root, num_train=5, force=True, **kw)['skipped'] is False
    assert make_coco_detection(root, num_train=5, **kw)['skipped'] is True


def test_interrupted_generation_leaves_nothing_and_is_redone(tmp_path, monkeypatch):
    root = str(tmp_path / 'seg')
    original = synthetic._render_image
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(synthetic, '_render_image', flaky)
    with pytest.raises(KeyboardInterrupt):
        make_segmentation(root, num_train=3, num_val=2, img_size=(48, 48))
    assert not osp.exists(root)
    assert os.listdir(tmp_path) == []  # no partial folder left behind
    monkeypatch.setattr(synthetic, '_render_image', original)
    result = make_segmentation(root, num_train=3, num_val=2, img_size=(48, 48))
    assert result['skipped'] is False and synthetic.is_complete(root)


def test_stale_partial_of_a_dead_process_is_removed(tmp_path):
    proc = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                          stdout=subprocess.PIPE, text=True, check=True)
    dead_pid = int(proc.stdout)
    stale = tmp_path / f'.coco.partial-{dead_pid}-deadbeef'
    (stale / 'train2017').mkdir(parents=True)
    make_coco_detection(str(tmp_path / 'coco'), num_train=2, num_val=1, img_size=(32, 32))
    assert not stale.exists()
    assert sorted(os.listdir(tmp_path)) == ['coco']


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    root = tmp_path / 'coco'
    root.mkdir()
    (root / 'precious.txt').write_text('not ours')
    with pytest.raises(FileExistsError, match='refusing'):
        make_coco_detection(str(root), num_train=2, num_val=1, img_size=(32, 32))
    assert (root / 'precious.txt').read_text() == 'not ours'


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError):
        make_coco_detection(str(tmp_path / 'a'), num_train=0)
    with pytest.raises(ValueError):
        make_segmentation(str(tmp_path / 'b'), num_classes=len(synthetic.SHAPES) + 1)
    with pytest.raises(ValueError):
        make_coco_detection(str(tmp_path / 'c'), img_size=(8, 8))


def test_num_classes_selects_shapes(tmp_path):
    result = make_coco_detection(str(tmp_path / 'coco'), num_train=6, num_val=5,
                                 img_size=(64, 64), num_classes=5)
    assert result['classes'] == list(synthetic.SHAPES)
    ann = _read_json(tmp_path / 'coco' / 'annotations' / 'instances_val2017.json')
    assert {a['category_id'] for a in ann['annotations']} == {1, 2, 3, 4, 5}


def test_make_synthetic_data_cli(tmp_path):
    out = tmp_path / 'synthetic'
    cmd = [sys.executable, osp.join(TOOLS, 'make_synthetic_data.py'), '--out', str(out),
           '--num-train', '3', '--num-val', '2', '--img-size', '40', '56', '--seed', '5']
    first = subprocess.run(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert 'written' in first.stdout and str(out / 'coco') in first.stdout
    assert str(out / 'seg') in first.stdout
    coco = _read_json(out / 'coco' / 'annotations' / 'instances_train2017.json')
    assert len(coco['images']) == 3 and coco['images'][0]['height'] == 40
    assert coco['images'][0]['width'] == 56
    assert len(os.listdir(out / 'seg' / 'ann_dir' / 'val')) == 2
    # the same script in this process (the first run above is the real subprocess)
    again = run_tool_in_process('make_synthetic_data.py', cmd[2:] + ['--kind', 'det'], '', REPO_ROOT)
    assert again.returncode == 0 and 'already present' in again.stdout
    assert '[seg]' not in again.stdout
    bad = run_tool_in_process('make_synthetic_data.py', ['--out', tmp_path / 'x', '--num-train', '0'], '', REPO_ROOT)
    assert bad.returncode == 2 and 'at least one image' in bad.stderr


def test_segmentation_without_class_colours_must_be_told_by_shape(tmp_path):
    """class_colours=False (the harder suite task): a class's pixels no longer share one colour."""
    import numpy as np
    from PIL import Image
    from rexnet_backbones.data.synthetic import make_segmentation

    def class_colour_spread(root, **kw):
        info = make_segmentation(str(root), num_train=12, num_val=2, img_size=(48, 48), num_classes=5, seed=0, **kw)
        means = []
        for name in sorted(os.listdir(root / info['splits']['train']['img_dir'])):
            img = np.asarray(Image.open(root / info['splits']['train']['img_dir'] / name), dtype=np.float64)
            label = np.asarray(Image.open(root / info['splits']['train']['ann_dir'] / name.replace('.jpg', '.png')))
            if (label == 1).sum() > 20:  # the rectangles
                means.append(img[label == 1].mean(axis=0))
        return np.std(np.array(means), axis=0).mean(), info

    fixed, _ = class_colour_spread(tmp_path / 'a')
    free, info = class_colour_spread(tmp_path / 'b', class_colours=False)
    assert free > 3 * fixed and len(info['classes']) == 6
