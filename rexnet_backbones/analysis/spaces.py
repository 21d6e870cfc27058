"""Design spaces for the trained study: RegNet's sampler, with and without ReXNet's principles.

Every space draws the four RegNet parameters as pycls's ``regnet_sampler`` does with its default
ranges (``pycls/sweep/config.py`` ``REGNET_SAMPLER``; quantization steps and distributions of
``pycls/sweep/random.py``), and keeps only 4-stage networks without an empty stage (pycls's
``NUM_STAGES: [4, 4]`` constraint):

* depth ``d``: uniform on ``{12..28}``;
* ``w0``: log-uniform on ``[8, 256]``, rounded up to a multiple of 8;
* ``wa``: log-uniform on ``[8, 256]``, rounded up to a multiple of 0.1;
* ``wm``: log-uniform on ``[2, 3]``, rounded up to a multiple of 0.001;
* group width ``g`` (RegNetX only): pycls's ``power2_or_log_uniform`` on ``[8, 128]``, step 8;
* bottleneck ratio 1 (RegNetX).

Block ``j`` has the continuous width ``u_j = w0 + wa * j``. Spaces:

* ``regnetx``: RegNetX as pycls builds it, stage-wise widths ``w0 * wm^round(log_wm(u_j / w0))``
  (timm's ``RegNet``/``RegNetCfg``, which quantizes exactly so).
* ``regnetx_noquant``: the same networks (same ``d, w0, wa, wm, g`` for each sampled index) with
  per-block widths ``u_j`` (ReXNet's linear growth), timm's RegNet blocks; a stride-1 block that widens
  its input keeps an identity shortcut on its first input channels (ReXNet's partial shortcut,
  :class:`PartialShortcutBottleneck`) instead of a 1x1 projection, so that, as in ``regnetx``, only
  the four stride-2 blocks project (:class:`LinearWidthRegNet` here; ``design='independent'`` builds
  the older form with a projection wherever the width changes, :class:`.design_space.LinearWidthRegNet`).
* ``ir_stage`` / ``ir_linear``: inverted residual blocks (timm's ReXNet ``LinearBottleneck``:
  1x1 expand x6, 3x3 depthwise, ReLU6, 1x1 linear projection, ReXNet's partial shortcut) with the
  stage-wise widths or the per-block widths ``u_j``; with linear growth every block widens its input,
  so every block's expand layer is an expanding one. ReLU6 after the expand layers (MobileNetV2).
* ``ir_stage_silu`` / ``ir_linear_silu``: the very networks of ``ir_stage`` / ``ir_linear`` (same
  parameters, same initial weights) with SiLU after the expand layers (ReXNet's choice).

Matched designs (``design='matched'``, the default): the spaces of one family of :data:`MATCHED`
(``regnetx``/``regnetx_noquant``; the four ``ir_*``) draw network ``i`` from one shared random
stream and keep a draw only when EVERY structurally different member of the family meets the FLOP
budget, so network ``i`` has the same ``(d, w0, wa, wm)`` in every space of its family, whichever
spaces a study runs; differences between them are then paired by index. ``design='independent'``
is the older sampler (one stream per space, used by the study in ``docs/results/rank/trained``), kept to
reproduce it: there ``regnetx_noquant`` and ``ir_linear`` share no network with their quantized
counterparts.

The stride-2 blocks are the first block of each of the quantized network's four stages in every
space, after a 3x3 stem of stride 2 (timm's RegNet, ImageNet's layout: 32x32 ends at 1x1) or 1
(pycls's CIFAR stem: 32x32 ends at 2x2; the trained study's default).
"""
from __future__ import annotations

import math
import random
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from timm.models.regnet import Bottleneck

from ..errors import FlopBudgetError, InvalidInputError

__all__ = ['TRAINED_SPACES', 'DEFAULT_SPACES', 'PAIRED', 'MATCHED', 'DESIGNS', 'pycls_regnet_params', 'stage_layout',
           'IRNet', 'LinearWidthRegNet', 'PartialShortcutBottleneck', 'build_space_model', 'init_weights',
           'count_acts', 'approx_macs', 'sample_model']

TRAINED_SPACES = ('regnetx', 'regnetx_noquant', 'ir_stage', 'ir_linear', 'ir_stage_silu', 'ir_linear_silu')
DEFAULT_SPACES = TRAINED_SPACES
#: space -> the space whose sampled networks (and initial weights) it reuses
PAIRED = {'ir_stage_silu': 'ir_stage', 'ir_linear_silu': 'ir_linear'}
#: space -> its family; with ``design='matched'`` a family's spaces share every sampled (d, w0, wa, wm)
MATCHED = {'regnetx': 'regnet', 'regnetx_noquant': 'regnet', 'ir_stage': 'ir', 'ir_linear': 'ir',
           'ir_stage_silu': 'ir', 'ir_linear_silu': 'ir'}
#: the samplers: 'matched' (shared streams per family) and 'independent' (the older, one per space)
DESIGNS = ('matched', 'independent')
IR_EXPANSION = 6
STEM_WIDTH = 32


def _uniform(rng: random.Random, lo: float, hi: float, q: float) -> float:
    """pycls ``uniform``: U[lo, hi + q), floored to a multiple of q."""
    return math.floor(rng.uniform(lo, hi + q) / q) * q


def _log_uniform(rng: random.Random, lo: float, hi: float, q: float) -> float:
    """pycls ``log_uniform``: log-uniform on (lo - min(q, lo/2), hi], rounded up to a multiple of q."""
    f = math.exp(rng.uniform(math.log(lo - min(q, lo / 2)), math.log(hi)))
    return math.ceil(round(f / q, 9)) * q


def _power2_or_log_uniform(rng: random.Random, lo: int, hi: int, q: int) -> int:
    """pycls ``power2_or_log_uniform``: a power of two of [lo, hi]; if >= q, log-uniform instead."""
    f = 2 ** math.floor(rng.uniform(math.log2(lo), math.log2(hi) + 1))
    return int(_log_uniform(rng, max(lo, q), hi, min(hi, q))) if f >= q else int(f)


def stage_layout(depth: int, w0: int, wa: float, wm: float) -> Tuple[List[float], List[int], int]:
    """``(continuous widths u_j, stage index of each block, number of non-empty stages)``; the stage of
    block ``j`` is ``round(log_wm(u_j / w0))`` as in RegNet's quantization."""
    u = [w0 + wa * j for j in range(depth)]
    exps = [int(round(math.log(x / w0) / math.log(wm))) for x in u]
    max_stages = max(exps) + 1
    return u, exps, len(set(exps)) if len(set(exps)) == max_stages else -1


def pycls_regnet_params(rng: random.Random, group: bool = True) -> Dict[str, Any]:
    """One draw of pycls's ``regnet_sampler`` (default ranges), redrawn until it has 4 stages."""
    while True:
        p = dict(depth=int(_uniform(rng, 12, 28, 1)), w0=int(_log_uniform(rng, 8, 256, 8)),
                 wa=round(_log_uniform(rng, 8.0, 256.0, 0.1), 1), wm=round(_log_uniform(rng, 2.0, 3.0, 0.001), 3))
        if group:
            p['group_size'] = _power2_or_log_uniform(rng, 8, 128, 8)
        if stage_layout(p['depth'], p['w0'], p['wa'], p['wm'])[2] == 4:
            return p


def _quantize(x: float, q: int) -> int:
    return max(q, int(round(x / q) * q))


class _StemBlocksHead(nn.Module):
    """A study network: ``stem`` -> ``blocks`` -> ``head``, with timm's ``group_matcher``."""

    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r'^stem', blocks=r'^blocks\.(\d+)')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class IRNet(_StemBlocksHead):
    """Inverted-residual network of RegNet's skeleton: timm's RegNet stem, timm's ReXNet blocks.

    ``linear=False``: block ``j`` has the stage-wise width ``w0 * wm^stage`` (multiple of 8);
    ``linear=True``: width ``u_j = w0 + wa * j`` (multiple of 8). ``act_layer`` follows the expand
    layer; ReLU6 follows the depthwise conv in both.
    """

    def __init__(self, depth: int, w0: int, wa: float, wm: float, linear: bool = False, act_layer: str = 'relu6',
                 num_classes: int = 1000, exp_ratio: float = IR_EXPANSION, stem_width: int = STEM_WIDTH,
                 stem_stride: int = 2):
        super().__init__()
        from timm.layers import ClassifierHead, ConvNormAct
        from timm.models.rexnet import LinearBottleneck

        u, stages, num = stage_layout(depth, w0, wa, wm)
        if num != 4:
            raise ValueError(f'these parameters give {num} stages; the skeleton has 4')
        self.stem = ConvNormAct(3, stem_width, 3, stride=stem_stride)
        prev = stem_width
        blocks = []
        for j in range(depth):
            w = _quantize(u[j] if linear else w0 * wm ** stages[j], 8)
            stride = 2 if j == 0 or stages[j] != stages[j - 1] else 1
            blocks.append(LinearBottleneck(prev, w, stride, exp_ratio=exp_ratio, act_layer=act_layer,
                                           dw_act_layer='relu6'))
            prev = w
        self.blocks = nn.Sequential(*blocks)
        self.num_features = prev
        self.head = ClassifierHead(prev, num_classes)


class PartialShortcutBottleneck(Bottleneck):
    """timm's RegNet ``Bottleneck`` (group conv, bottleneck ratio 1, no SE) whose shortcut, when the
    block widens its input at stride 1, is ReXNet's partial identity: the input is added to the first
    ``in_channels`` output channels and the new channels get none (no 1x1 projection). Otherwise
    timm's block unchanged (identity, or a 1x1 projection at stride 2)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, group_size: int = 1):
        partial = stride == 1 and out_chs > in_chs
        super().__init__(in_chs, out_chs, stride=stride, group_size=group_size, se_ratio=0., bottle_ratio=1.,
                         downsample=None if partial else 'conv1x1')
        self.partial, self.in_channels = partial, in_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.partial:
            return super().forward(x)
        out = self.conv3(self.se(self.conv2(self.conv1(x))))
        out = torch.cat([out[:, :self.in_channels] + x, out[:, self.in_channels:]], dim=1)
        return self.act3(out)


class LinearWidthRegNet(_StemBlocksHead):
    """RegNetX with per-block linear widths ``u_j = w0 + wa * j`` (each rounded to a multiple of its
    group width ``min(group_size, width)``), the quantized network's stage boundaries (stride 2 at the
    first block of each of its four stages) and ReXNet's partial identity shortcuts where a stride-1
    block widens (:class:`PartialShortcutBottleneck`); the stride-2 blocks project, as in RegNetX."""

    def __init__(self, depth: int, w0: int, wa: float, wm: float, group_size: int, num_classes: int = 1000,
                 stem_width: int = STEM_WIDTH, stem_stride: int = 2):
        super().__init__()
        from timm.layers import ClassifierHead, ConvNormAct
        from timm.models.regnet import quantize_float

        u, stages, num = stage_layout(depth, w0, wa, wm)
        if num != 4:
            raise ValueError(f'these parameters give {num} stages; the skeleton has 4')
        self.stem = ConvNormAct(3, stem_width, 3, stride=stem_stride)
        prev, blocks = stem_width, []
        for j in range(depth):
            g = min(group_size, max(8, quantize_float(u[j], 8)))
            w = max(g, quantize_float(u[j], g))
            stride = 2 if j == 0 or stages[j] != stages[j - 1] else 1
            blocks.append(PartialShortcutBottleneck(prev, w, stride, group_size=g))
            prev = w
        self.blocks = nn.Sequential(*blocks)
        self.num_features = prev
        self.head = ClassifierHead(prev, num_classes)


def init_weights(model: nn.Module, zero_init_last: bool = False) -> nn.Module:
    """pycls's initialisation, the same in every space: conv weights N(0, 2 / fan_out), BatchNorm
    weight 1 and bias 0, linear weights N(0, 0.01), biases 0; with ``zero_init_last`` (pycls's
    ``BN.ZERO_INIT_FINAL_GAMMA``, off by default there too) the last BN of every residual branch has
    weight 0 on the channels its shortcut adds to, so each block starts as the identity there (a ReXNet
    block's new channels, which no shortcut feeds, keep weight 1)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            nn.init.zeros_(m.bias)
    if zero_init_last:
        for m in model.modules():
            bn = _last_residual_bn(m)
            if bn is not None:
                with torch.no_grad():
                    bn.weight[:getattr(m, 'in_channels', bn.weight.numel())] = 0.0
    return model


def _last_residual_bn(block: nn.Module) -> Optional[nn.Module]:
    """The BN that ends the residual branch of a timm RegNet ``Bottleneck`` or of a ReXNet
    ``LinearBottleneck`` with a shortcut; ``None`` for any other module."""
    from timm.models.regnet import Bottleneck
    from timm.models.rexnet import LinearBottleneck
    if isinstance(block, Bottleneck):
        return block.conv3.bn if block.downsample is not None or getattr(block, 'partial', False) else None
    if isinstance(block, LinearBottleneck) and block.use_shortcut:
        return block.conv_pwl.bn
    return None


def build_space_model(space: str, params: Dict[str, Any], num_classes: int, stem_stride: int = 2,
                      zero_init_last: bool = False, design: str = 'matched') -> nn.Module:
    """The network of ``space`` with ``params`` (timm's classes) and a 3x3 stem of ``stem_stride``
    (2: ImageNet's, timm's RegNet; 1: pycls's CIFAR stem), initialised by :func:`init_weights` (from
    torch's global seed), in train mode. ``design='independent'``: ``regnetx_noquant`` with the older
    projection shortcuts."""
    if design not in DESIGNS:
        raise InvalidInputError(f'unknown design {design!r}; choose from {", ".join(DESIGNS)}')
    if space == 'regnetx':
        from timm.layers import ConvNormAct
        from timm.models.regnet import RegNet, RegNetCfg
        model: nn.Module = RegNet(RegNetCfg(**params), num_classes=num_classes)
        if stem_stride != 2:  # timm's stem has stride 2; the same conv-BN-ReLU with another stride
            model.stem = ConvNormAct(3, model.stem.conv.out_channels, 3, stride=stem_stride)
    elif space == 'regnetx_noquant' and design == 'independent':
        from .design_space import LinearWidthRegNet as ProjectionLinearWidthRegNet
        model = ProjectionLinearWidthRegNet(**params, num_classes=num_classes, stem_stride=stem_stride)
    elif space == 'regnetx_noquant':
        model = LinearWidthRegNet(**params, num_classes=num_classes, stem_stride=stem_stride)
    elif space in TRAINED_SPACES:
        model = IRNet(**params, linear='linear' in space, act_layer='silu' if space.endswith('_silu') else 'relu6',
                      num_classes=num_classes, stem_stride=stem_stride)
    else:
        raise InvalidInputError(f'unknown design space {space!r}; choose from {", ".join(TRAINED_SPACES)}')
    return init_weights(model, zero_init_last)


def count_acts(model: nn.Module, size: Tuple[int, int]) -> int:
    """Activations as pycls counts them: output elements of every conv and linear layer, one image."""
    total = 0

    def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += out[0].numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, *size))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total


def approx_macs(space: str, p: Dict[str, Any], size: Tuple[int, int], num_classes: int = 10,
                stem_stride: int = 2, design: str = 'matched') -> float:
    """Multiply-adds of the convolutions from the widths alone (no model built): a cheap pre-filter of
    :func:`sample_model`, which then counts the built model's exactly; within a few percent."""
    base = PAIRED.get(space, space)
    u, stages, _ = stage_layout(p['depth'], p['w0'], p['wa'], p['wm'])
    h, w = math.ceil(size[0] / stem_stride), math.ceil(size[1] / stem_stride)
    total = h * w * 3 * STEM_WIDTH * 9.0
    prev = STEM_WIDTH
    for j in range(p['depth']):
        width = _quantize(u[j] if 'noquant' in base or 'linear' in base else p['w0'] * p['wm'] ** stages[j], 8)
        n_in = h * w
        if j == 0 or stages[j] != stages[j - 1]:
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        n = h * w
        if base.startswith('regnetx'):
            g = min(p['group_size'], width)
            total += n_in * prev * width + n * width * g * 9 + n * width * width
            project = n != n_in or (prev != width and (design == 'independent' or prev > width))
            total += n * prev * width if project else 0
        else:
            e = round(prev * IR_EXPANSION)
            total += n_in * prev * e + n * e * 9 + n * e * width
        prev = width
    return total + prev * num_classes


def _family_members(space: str, design: str) -> Tuple[str, ...]:
    """The structurally different spaces whose FLOPs a draw for ``space`` must meet (SiLU variants
    have their base's FLOPs)."""
    if design == 'independent':
        return (PAIRED.get(space, space),)
    family = MATCHED[space]
    return tuple(sp for sp in TRAINED_SPACES if MATCHED[sp] == family and sp not in PAIRED)


def _stream(space: str, seed: int, index: int, design: str) -> str:
    if design == 'independent':
        return f'{PAIRED.get(space, space)}:{seed}:{index}'
    return f'{MATCHED[space]}:matched:{seed}:{index}'


def sample_model(space: str, index: int, flops: Tuple[float, float], input_size: Tuple[int, int], seed: int = 0,
                 max_tries: int = 500, num_classes: int = 10, stem_stride: int = 2,
                 design: str = 'matched') -> Dict[str, Any]:
    """Parameters of model ``index`` of ``space`` with FLOPs (multiply-adds, one image, ``count_macs``)
    in ``[flops[0], flops[1]]``, drawn from the model's own random stream (so any subset of indices,
    e.g. a shard, samples the same models). ``design='matched'``: the stream is the family's
    (:data:`MATCHED`) and a draw is kept only when every member of the family meets the budget, so
    every space of a family gets the same parameters for ``index``; ``'independent'``: one stream per
    space (paired SiLU spaces reuse their base's). ``flops`` is this space's count.

    Raises :class:`FlopBudgetError` after ``max_tries`` draws, with the range that was reached."""
    from .network import count_macs

    if design not in DESIGNS:
        raise InvalidInputError(f'unknown design {design!r}; choose from {", ".join(DESIGNS)}')
    if space not in TRAINED_SPACES:
        raise InvalidInputError(f'unknown design space {space!r}; choose from {", ".join(TRAINED_SPACES)}')
    members = _family_members(space, design)
    base = PAIRED.get(space, space)
    rng = random.Random(_stream(space, seed, index, design))
    seen: List[float] = []
    for tries in range(1, max_tries + 1):
        p = pycls_regnet_params(rng, group=base.startswith('regnetx'))
        approx = [approx_macs(m, p, input_size, num_classes, stem_stride, design) for m in members]
        if not all(flops[0] / 1.3 <= a <= flops[1] * 1.3 for a in approx):
            seen.append(approx[members.index(base)])
            continue
        counts = {m: count_macs(build_space_model(m, p, num_classes, stem_stride, design=design).eval(), input_size)
                  for m in members}
        seen.append(counts[base])
        if all(flops[0] <= f <= flops[1] for f in counts.values()):
            return dict(params=p, flops=counts[base], tries=tries)
    raise FlopBudgetError(
        f'{space}: none of {max_tries} sampled models has {flops[0] / 1e6:.2f}-{flops[1] / 1e6:.2f} MFLOPs at '
        f'{input_size[0]}x{input_size[1]}{" in every space of its family " + str(members) if len(members) > 1 else ""}'
        f' (reached {min(seen) / 1e6:.2f}-{max(seen) / 1e6:.2f} MFLOPs, median '
        f'{sorted(seen)[len(seen) // 2] / 1e6:.2f}); move --flops into that range or raise --max-tries')


def describe_spaces(spaces: Optional[Sequence[str]] = None, design: str = 'matched') -> str:
    """One line per space (for reports); ``design``: the sampler the study used (records without one
    used ``'independent'``)."""
    matched = design == 'matched'
    text = {'regnetx': 'RegNetX (pycls ranges), stage-wise widths, group conv, bottleneck ratio 1',
            'regnetx_noquant': ('the regnetx networks (same d, w0, wa, wm, g per index) with per-block linear '
                                'widths w0 + wa*j; partial identity shortcuts where a stride-1 block widens'
                                if matched else 'RegNetX parameters drawn on their own (no network shared with '
                                'regnetx), per-block linear widths w0 + wa*j, a 1x1 projection shortcut wherever '
                                'the width changes'),
            'ir_stage': 'inverted residual x6, stage-wise widths, ReLU6 after expand',
            'ir_linear': ('the ir_stage networks with per-block linear widths, ReLU6 after expand' if matched else
                          'inverted residual x6, per-block linear widths, ReLU6 after expand (drawn on its own: no '
                          'network shared with ir_stage)'),
            'ir_stage_silu': 'ir_stage networks with SiLU after expand',
            'ir_linear_silu': 'ir_linear networks with SiLU after expand'}
    return '\n'.join(f'- `{s}`: {text[s]}' for s in (spaces or TRAINED_SPACES))
