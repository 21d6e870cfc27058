"""Training throughput on one GPU -> GPU-hour estimates (RegNet's method at ImageNet scale;
the COCO 1x suite). Writes one JSON file. `--smoke` runs tiny sizes on CPU to test the script.

Parts:
  spaces: K models sampled per design space at RegNet's 400MF ImageNet regime (224 px, stride-2 stem,
          1000 classes), SGD step, batch 128, bf16 autocast, channels_last -> img/s each.
  timm:   whole-network ImageNet training step of named timm models (224 px, batch 256, bf16 autocast).
  det:    a RetinaNet (torchvision's RetinaNet head/loss, FPN P3-P7 256 ch as mmdet's retinanet 1x) on a
          timm features_only backbone, batch 2 at 800x1333, fp32 (TF32 convs, torch default) and bf16 autocast.
"""
import argparse
import json
import math
import sys
import time
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F


def sync(dev):
    if dev == 'cuda':
        torch.cuda.synchronize()


def time_steps(step, dev, warmup, runs):
    for _ in range(warmup):
        step()
    sync(dev)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        step()
        sync(dev)
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def cls_step_fn(model, batch, size, dev, amp, num_classes=1000):
    model.to(dev).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-5)
    x = torch.randn(batch, 3, size, size, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (batch,), device=dev)

    def step():
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def _sample(job):
    torch.set_num_threads(1)
    from rexnet_backbones.analysis.spaces import sample_model
    space, i, flops, size = job
    t0 = time.time()
    s = sample_model(space, i, flops, (size, size), seed=0, max_tries=5000, num_classes=1000, stem_stride=2)
    return space, i, s, time.time() - t0


def part_spaces(a, dev, out):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from rexnet_backbones.analysis.spaces import DEFAULT_SPACES, build_space_model
    jobs = [(space, i, a.flops, a.size) for space in (a.spaces or DEFAULT_SPACES)
            for i in range(a.first_index, a.first_index + a.models_per_space)]
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=min(len(jobs), a.workers), mp_context=mp.get_context('spawn')) as ex:
        samples = list(ex.map(_sample, jobs))
    out['spaces_sampling_s'] = time.time() - t0
    print(f'sampled {len(samples)} models in {time.time() - t0:.1f}s', flush=True)
    res = []
    for space, i, s, sample_s in samples:
        torch.manual_seed(i)
        m = build_space_model(space, s['params'], 1000, stem_stride=2)
        step = cls_step_fn(m, a.cls_batch, a.size, dev, True)
        sec = time_steps(step, dev, a.warmup, a.runs)
        r = dict(space=space, index=i, mflops=s['flops'] / 1e6, params=s['params'], batch=a.cls_batch, step_s=sec,
                 img_s=a.cls_batch / sec, sample_s=sample_s)
        res.append(r)
        print(json.dumps(r), flush=True)
        del m, step
        if dev == 'cuda':
            torch.cuda.empty_cache()
    out['spaces'] = res


def part_timm(a, dev, out):
    import timm
    import rexnet_backbones  # noqa: F401  (registers the ReXNet family in timm)
    res = []
    for name in a.timm_models:
        torch.manual_seed(0)
        m = timm.create_model(name, num_classes=1000)
        step = cls_step_fn(m, a.timm_batch, a.size, dev, True)
        sec = time_steps(step, dev, a.warmup, a.runs)
        r = dict(model=name, batch=a.timm_batch, size=a.size, amp='bf16', step_s=sec, img_s=a.timm_batch / sec,
                 params_m=sum(p.numel() for p in m.parameters()) / 1e6)
        res.append(r)
        print(json.dumps(r), flush=True)
        del m, step
    out['timm'] = res


class TimmFPN(nn.Module):
    """timm features_only C3-C5 -> FPN P3-P5 + P6/P7 from C5 (mmdet retinanet: add_extra_convs='on_input')."""

    def __init__(self, name):
        super().__init__()
        import timm
        from torchvision.ops import FeaturePyramidNetwork
        from torchvision.ops.feature_pyramid_network import LastLevelP6P7
        self.body = timm.create_model(name, features_only=True, out_indices=(2, 3, 4), pretrained=False)
        chs = self.body.feature_info.channels()
        self.fpn = FeaturePyramidNetwork(chs, 256, extra_blocks=LastLevelP6P7(chs[-1], 256))
        self.out_channels = 256

    def forward(self, x):
        feats = self.body(x)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


def part_det(a, dev, out):
    import rexnet_backbones  # noqa: F401
    from torchvision.models.detection import RetinaNet
    res = []
    h, w = a.det_size
    for name in a.det_models:
        for amp in ((False,) if dev == "cpu" else (False, True)):
            torch.manual_seed(0)
            bb = TimmFPN(name)
            for mod in bb.body.modules():  # norm_eval as mmdet's recipes
                if isinstance(mod, nn.BatchNorm2d):
                    mod.eval()
                    mod.requires_grad_(False)
            m = RetinaNet(bb, num_classes=80, min_size=h, max_size=w).to(dev).train()
            bb.body.apply(lambda mod: mod.eval() if isinstance(mod, nn.BatchNorm2d) else None)
            opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.01, momentum=0.9,
                                  weight_decay=1e-4)
            imgs = [torch.rand(3, h, w, device=dev) for _ in range(a.det_batch)]
            g = torch.Generator().manual_seed(0)
            tg = []
            for _ in range(a.det_batch):
                xy = torch.rand(12, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
                wh = 16 + torch.rand(12, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3])
                tg.append(dict(boxes=torch.cat([xy, xy + wh], 1).to(dev),
                               labels=torch.randint(0, 80, (12,), generator=g).to(dev)))

            def step():
                with torch.autocast(dev, dtype=torch.bfloat16, enabled=amp):
                    losses = m(imgs, tg)
                    loss = sum(losses.values())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            sec = time_steps(step, dev, a.warmup, a.runs)
            peak = torch.cuda.max_memory_allocated() / 2**30 if dev == 'cuda' else None
            r = dict(model=name, batch=a.det_batch, size=[h, w], amp='bf16' if amp else 'fp32(tf32 convs)',
                     step_s=sec, img_s=a.det_batch / sec, peak_gib=peak)
            res.append(r)
            print(json.dumps(r), flush=True)
            del m, bb, opt, step
            if dev == 'cuda':
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
    out['det'] = res


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--out', required=True)
    p.add_argument('--smoke', action='store_true')
    p.add_argument('--parts', nargs='+', default=['spaces', 'timm', 'det'])
    p.add_argument('--spaces', nargs='+')
    p.add_argument('--first-index', type=int, default=0)
    p.add_argument('--models-per-space', type=int)
    a = p.parse_args()
    a.models_per_space_arg = a.models_per_space
    dev = 'cpu' if a.smoke else 'cuda'
    torch.backends.cudnn.benchmark = True
    a.size, a.flops, a.models_per_space, a.cls_batch = 224, (360e6, 440e6), 6, 128
    a.workers = 16
    a.timm_models = ['rexnet_100', 'rexnet_lite_100', 'regnetx_004', 'regnetx_008', 'resnet50', 'mobilenetv2_100']
    a.timm_batch, a.det_models, a.det_batch, a.det_size = 256, ['rexnet_100', 'rexnet_lite_100', 'regnetx_008',
                                                                 'resnet50'], 2, (800, 1333)
    a.warmup, a.runs = 5, 15
    if a.smoke:
        a.size, a.flops, a.models_per_space, a.cls_batch = 64, (20e6, 40e6), 1, 4
        a.workers = 2
        a.timm_models, a.timm_batch, a.det_models, a.det_size = ['rexnet_100'], 2, ['rexnet_100'], (128, 160)
        a.warmup, a.runs = 1, 2
    if a.models_per_space_arg:
        a.models_per_space = a.models_per_space_arg
    out = dict(device=torch.cuda.get_device_name(0) if dev == 'cuda' else 'cpu', torch=torch.__version__,
               cudnn=torch.backends.cudnn.version() if dev == 'cuda' else None, settings={
                   k: v for k, v in vars(a).items() if k not in ('out',)})
    for part in a.parts:
        t = time.time()
        try:
            globals()['part_' + part](a, dev, out)
        except Exception as e:  # keep the other parts' numbers
            import traceback
            traceback.print_exc()
            out[part + '_error'] = repr(e)
        out[part + '_wall_s'] = time.time() - t
        with open(a.out, 'w') as f:
            json.dump(out, f, indent=1)
    print('done', json.dumps({k: v for k, v in out.items() if k.endswith('_wall_s')}))


if __name__ == '__main__':
    main()
