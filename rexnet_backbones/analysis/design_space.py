"""ReXNet's design space against RegNet's, measured as RegNet measures design spaces (EDFs).

Networks are sampled at random from a design space, kept only when their FLOPs (the whole
classifier, one image, multiply-adds of the convolutions and linear layers as pycls counts them:
:func:`.network.count_macs`) are within ``tol`` of a budget, built with timm's own classes at
random initialisation, and measured on one fixed batch: the mean and minimum rank ratio over their
blocks' outputs (:func:`.network.rank_profile`, BatchNorm with batch statistics).

Spaces (parameters drawn independently; ``U``: uniform, ``logU``: log-uniform):

* ``regnetx``: ``timm.models.regnet.RegNet(RegNetCfg(w0, wa, wm, depth, group_size))`` with
  depth ``U{12..28}``, w0 ``8 * U{2..8}``, wa ``logU[12, 64]``, wm ``logU[1.8, 3]``, group width
  ``{8, 16, 24, 32}``; only 4-stage networks (timm's RegNet has 4 stages), as in pycls.
* ``regnetx_noquant``: the same parameters without the stage-wise quantization of the widths:
  block ``j`` has width ``w0 + wa * j`` (rounded to a multiple of its group width) instead of
  ``w0 * wm^round(log_wm((w0 + wa * j) / w0))``; stages (where the stride 2 is) are those of the
  quantized network. Built from timm's RegNet ``Bottleneck`` blocks (:class:`LinearWidthRegNet`).
* ``rexnet``: ``timm.models.rexnet.RexNet(initial_chs, final_chs, width_mult, depth_mult,
  se_ratio)`` with width_mult ``logU[0.75, 1.3]``, depth_mult ``U[0.6, 1.4]``, initial_chs
  ``U{8..32}``, final_chs ``U{90..270}``, se_ratio ``{0, 1/12, 1/6}``; SiLU after the expansion (timm's
  default ``act_layer='swish'``; ReLU6 after the depthwise conv).
* ``rexnet_relu6``: the very networks sampled for ``rexnet`` (paired; same FLOPs) with ReLU6 in
  place of SiLU (``act_layer='relu6'``).

The ranges are narrower than the RegNet paper's (d < 64, w0, wa < 256) and centred on
400-MFLOP networks at 224x224 (RegNetX-400MF, ReXNet-1.0x) so that rejection sampling keeps a fair
share of the samples; a budget ``B`` at input size ``S`` behaves like ``B * (224 / S)^2`` at 224.
"""
from __future__ import annotations

import math
import random
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..errors import ToolError
from .estimators import DEFAULT_RTOL, ESTIMATORS
from .network import count_macs, rank_profile, synthetic_images

__all__ = ['SPACES', 'LinearWidthRegNet', 'sample_params', 'build_network', 'sample_networks',
           'design_space_study', 'space_summary', 'design_markdown', 'plot_edfs']

SPACES = ('regnetx', 'regnetx_noquant', 'rexnet', 'rexnet_relu6')
_PAIRED = {'rexnet_relu6': 'rexnet'}  # space -> the space whose sampled networks it reuses


def _log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def sample_params(space: str, rng: random.Random) -> Dict[str, Any]:
    """One random parameter set of ``space`` (see the module docstring for the distributions)."""
    if space in ('regnetx', 'regnetx_noquant'):
        return dict(depth=rng.randint(12, 28), w0=8 * rng.randint(2, 8), wa=round(_log_uniform(rng, 12, 64), 2),
                    wm=round(_log_uniform(rng, 1.8, 3.0), 3), group_size=rng.choice([8, 16, 24, 32]))
    if space in ('rexnet', 'rexnet_relu6'):
        return dict(width_mult=round(_log_uniform(rng, 0.75, 1.3), 3), depth_mult=round(rng.uniform(0.6, 1.4), 3),
                    initial_chs=rng.randint(8, 32), final_chs=rng.randint(90, 270),
                    se_ratio=rng.choice([0.0, 1 / 12, 1 / 6]),
                    act_layer='relu6' if space == 'rexnet_relu6' else 'swish')
    raise KeyError(f'unknown design space {space!r}; choose from {SPACES}')


def _regnet_stages(p: Dict[str, Any]) -> Tuple[List[int], int]:
    from timm.models.regnet import generate_regnet
    widths, num_stages, _ = generate_regnet(p['wa'], p['w0'], p['wm'], p['depth'], p['group_size'])
    return widths, num_stages


class LinearWidthRegNet(nn.Module):
    """RegNetX without the stage-wise width quantization, from timm's RegNet blocks.

    Block ``j`` (0-based over the whole network) has width ``w0 + wa * j`` rounded to a multiple
    of its group width ``min(group_size, width)``; the first block of each of the quantized network's
    stages has stride 2.
    """

    def __init__(self, depth: int, w0: int, wa: float, wm: float, group_size: int, num_classes: int = 1000,
                 stem_width: int = 32, stem_stride: int = 2):
        super().__init__()
        from timm.layers import ClassifierHead, ConvNormAct
        from timm.models.regnet import Bottleneck, quantize_float

        quant_widths, num_stages = _regnet_stages(dict(depth=depth, w0=w0, wa=wa, wm=wm, group_size=group_size))
        if num_stages != 4:
            raise ValueError(f'these parameters give {num_stages} stages; RegNet has 4')
        self.stem = ConvNormAct(3, stem_width, 3, stride=stem_stride)
        prev, j = stem_width, 0
        for s in range(4):
            blocks = []
            stage_depth = quant_widths.count(sorted(set(quant_widths))[s])
            for b in range(stage_depth):
                u = w0 + wa * j
                g = min(group_size, max(8, quantize_float(u, 8)))
                w = max(g, quantize_float(u, g))
                blocks.append(Bottleneck(prev, w, stride=2 if b == 0 else 1, group_size=g, se_ratio=0.,
                                         bottle_ratio=1.))
                prev, j = w, j + 1
            self.add_module(f's{s + 1}', nn.Sequential(*blocks))
        self.num_features = prev
        self.head = ClassifierHead(prev, num_classes)

    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r'^stem', blocks=r'^s(\d+)' if coarse else r'^s(\d+)\.(\d+)')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for s in range(4):
            x = getattr(self, f's{s + 1}')(x)
        return self.head(x)


def build_network(space: str, params: Dict[str, Any]) -> nn.Module:
    """The network of ``space`` with ``params`` (timm classes), in eval mode, 1000 classes."""
    if space == 'regnetx':
        from timm.models.regnet import RegNet, RegNetCfg
        model = RegNet(RegNetCfg(**params))
    elif space == 'regnetx_noquant':
        model = LinearWidthRegNet(**params)
    elif space in ('rexnet', 'rexnet_relu6'):
        from timm.models.rexnet import RexNet
        model = RexNet(**params)
    else:
        raise KeyError(f'unknown design space {space!r}; choose from {SPACES}')
    model.eval()
    return model


def sample_networks(space: str, num: int, flops: float, tol: float = 0.1, input_size: Tuple[int, int] = (224, 224),
                    seed: int = 0, max_tries: int = 2000, progress: bool = False) -> List[Dict[str, Any]]:
    """``num`` parameter sets of ``space`` whose FLOPs are within ``flops * (1 +- tol)``, by rejection
    (reproducible for ``seed``); each as ``{'params', 'flops', 'tries'}``."""
    rng = random.Random(f'{space}:{seed}')
    out: List[Dict[str, Any]] = []
    tries = 0
    while len(out) < num:
        if tries >= max_tries:
            raise ToolError(f'{space}: only {len(out)} of {num} networks within {flops / 1e6:.1f} MFLOPs '
                               f'+-{tol:.0%} at {input_size} after {max_tries} samples; widen --flops-tol or '
                               'move the budget closer to 400 MFLOPs at 224x224')
        tries += 1
        p = sample_params(space, rng)
        if space.startswith('regnetx') and _regnet_stages(p)[1] != 4:
            continue
        f = count_macs(build_network(space, p), input_size)
        if abs(f - flops) <= tol * flops:
            out.append(dict(params=p, flops=f, tries=tries))
            if progress:
                print(f'[{space}] sampled {len(out)}/{num} ({tries} tries)', file=sys.stderr, flush=True)
    return out


def design_space_study(spaces: Sequence[str] = SPACES, num_models: int = 10, flops: float = 400e6,
                       tol: float = 0.1, input_size: Tuple[int, int] = (224, 224), num_images: int = 32,
                       estimators: Sequence[str] = ESTIMATORS, center: bool = False, rtol: float = DEFAULT_RTOL,
                       max_rows: int = 2048, expand: bool = False, seed: int = 0,
                       progress: bool = False) -> List[Dict[str, Any]]:
    """One record per sampled network: ``space``, ``index``, ``params``, ``flops``, ``num_layers``,
    ``mean``/``min`` (rank ratio over the layers, per estimator) and ``layers`` (name, channels,
    ratios). All networks see the same ``num_images`` standard-normal images (from ``seed``)."""
    images = synthetic_images(num_images, input_size, seed)
    samples: Dict[str, List[Dict[str, Any]]] = {}
    records = []
    start = time.time()
    for space in spaces:
        base = _PAIRED.get(space)
        if base is not None:
            if base not in samples:
                samples[base] = sample_networks(base, num_models, flops, tol, input_size, seed, progress=progress)
            nets = [dict(n, params=dict(n['params'], act_layer=sample_params(space, random.Random(0))['act_layer']))
                    for n in samples[base]]
        else:
            if space not in samples:
                samples[space] = sample_networks(space, num_models, flops, tol, input_size, seed, progress=progress)
            nets = samples[space]
        for i, net in enumerate(nets):
            torch.manual_seed(seed * 1000 + i)
            model = build_network(space, net['params'])
            layers = rank_profile(model, images, estimators, center, rtol, max_rows=max_rows, expand=expand,
                                  seed=seed, bn_stats='batch')
            rec = dict(space=space, index=i, params=net['params'], flops=net['flops'], num_layers=len(layers),
                       mean={e: sum(x['rank_ratio'][e] for x in layers) / len(layers) for e in estimators},
                       min={e: min(x['rank_ratio'][e] for x in layers) for e in estimators},
                       layers=[dict(name=x['name'], channels=x['channels'], rows=x['rows'],
                                    rank_ratio=x['rank_ratio']) for x in layers])
            records.append(rec)
            if progress:
                print(f'[{space}] model {i + 1}/{len(nets)}: {net["flops"] / 1e6:.0f} MFLOPs, {len(layers)} layers, '
                      f'{time.time() - start:.1f}s', file=sys.stderr, flush=True)
    return records


def _quantile(values: Sequence[float], q: float) -> float:
    return float(torch.quantile(torch.tensor(values, dtype=torch.float64), q))


def space_summary(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per space, statistic (``mean``/``min``) and estimator: median, 10th and 90th percentiles."""
    out = []
    spaces = list(dict.fromkeys(r['space'] for r in records))
    estimators = list(records[0]['mean'])
    for s in spaces:
        rs = [r for r in records if r['space'] == s]
        for stat in ('mean', 'min'):
            for e in estimators:
                v = [r[stat][e] for r in rs]
                out.append(dict(space=s, statistic=stat, estimator=e, num_models=len(v), median=_quantile(v, 0.5),
                                p10=_quantile(v, 0.1), p90=_quantile(v, 0.9)))
    return out


def design_markdown(records: Sequence[Dict[str, Any]], header: str = '') -> str:
    """Tables of :func:`space_summary`, one per statistic."""
    summary = space_summary(records)
    lines = [header, ''] if header else []
    for stat in ('mean', 'min'):
        lines += [f'**{stat} rank ratio over the layers of each network** (median [10th, 90th percentile])', '',
                  '| space | models | ' + ' | '.join(dict.fromkeys(x['estimator'] for x in summary)) + ' |',
                  '|---|---:|' + '---:|' * len(records[0]['mean'])]
        for s in dict.fromkeys(x['space'] for x in summary):
            row = [x for x in summary if x['space'] == s and x['statistic'] == stat]
            lines.append(f"| {s} | {row[0]['num_models']} | " + ' | '.join(
                f"{x['median']:.3f} [{x['p10']:.3f}, {x['p90']:.3f}]" for x in row) + ' |')
        lines.append('')
    return '\n'.join(lines)


def plot_edfs(records: Sequence[Dict[str, Any]], path: str, estimators: Optional[Sequence[str]] = None) -> None:
    """EDFs (fraction of networks with a value below x) of the mean and the minimum rank ratio,
    one curve per space; top row mean, bottom row min, one column per estimator."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    estimators = list(estimators or records[0]['mean'])
    spaces = list(dict.fromkeys(r['space'] for r in records))
    fig, axes = plt.subplots(2, len(estimators), figsize=(3.6 * len(estimators), 6.4), squeeze=False)
    for col, e in enumerate(estimators):
        for row, stat in enumerate(('mean', 'min')):
            ax = axes[row, col]
            for k, s in enumerate(spaces):
                v = sorted(r[stat][e] for r in records if r['space'] == s)
                ax.step(v, [(i + 1) / len(v) for i in range(len(v))], where='post', color=plt.get_cmap('tab10')(k),
                        label=f'{s} (n={len(v)})')
            ax.set_title(f'{stat} rank ratio: {e}', fontsize=9)
            ax.set_xlabel('rank / channels', fontsize=8)
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel('cumulative prob.')
    axes[0, 0].legend(fontsize=7)
    flops = _quantile([r['flops'] for r in records], 0.5)
    fig.suptitle(f'EDFs of the rank ratio at initialisation (networks of {flops / 1e6:.0f} MFLOPs median, '
                 'multiply-adds at the input size used)')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
