"""The benchmark's cost model: activations, the traffic model, the machine probe, the roofline and its
achieved fraction, and the per-layer table, on tiny nets counted by hand (fast, nothing downloaded)."""
import math
import statistics

import pytest
import torch
import torch.nn as nn

from rexnet_backbones.benchmark.costs import layer_costs, layer_kind
from rexnet_backbones.benchmark.layers import CLOCKS, layer_report, markdown_layers, module_times
from rexnet_backbones.benchmark.roofline import (LayerCost, MachinePeak, achieved_fraction, probe_machine,
                                                 roofline_of)
from rexnet_backbones.benchmark.traffic import TrafficAnalyzer

MACHINE = MachinePeak(peak_flops_per_s=1e9, bandwidth_bytes_per_s=1e8, one_thread_flops_per_s=1e9,
                      one_thread_bandwidth_bytes_per_s=1e8, median_flops_per_s=1e9, median_bandwidth_bytes_per_s=1e8,
                      threads=1, matmul_size=8, copy_mib=1, chunk_mib=1, seconds=0.0, method='fixed')


def conv_bytes(conv, in_shape, out_shape, element_bytes: int = 4) -> int:
    """Reference: the traffic of one conv by formula, input + weights (+ bias) + output elements, in bytes."""
    def numel(shape) -> int:
        n = 1
        for s in shape:
            n *= s
        return n
    weights = conv.weight.numel() + (conv.bias.numel() if conv.bias is not None else 0)
    return (numel(in_shape) + weights + numel(out_shape)) * element_bytes


class SE(nn.Module):
    """A squeeze-excitation block: mean, two 1x1 convs, sigmoid, product."""

    def __init__(self, c: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, 2, 1), nn.Conv2d(2, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class Tiny(nn.Module):
    """conv 3x3 (3->8) + BN + SiLU, depthwise 3x3, SE, 1x1 (8->8) with a residual add, pool, linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.SiLU()
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.se = SE(8)
        self.pw = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.act(self.bn(self.stem(x)))
        x = x + self.pw(self.se(self.dw(x)))
        return self.fc(x.mean((2, 3)))


def _tiny():
    torch.manual_seed(0)
    return Tiny().eval(), torch.randn(1, 3, 8, 8)


def test_activations_are_conv_and_matmul_outputs():
    """RegNet's metric: the output elements of every conv (SE's included) and of the linear layer."""
    model, x = _tiny()
    layers, _ = layer_costs(model, x)
    acts = {layer.name: layer.activations for layer in layers if layer.activations}
    assert acts == {'stem': 8 * 64, 'dw': 8 * 64, 'se.fc1': 2, 'se.fc2': 8, 'pw': 8 * 64, 'fc': 10}
    assert sum(layer.activations for layer in layers) == 3 * 512 + 2 + 8 + 10


def test_bytes_of_one_conv_follow_the_formula():
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    x = torch.randn(1, 3, 16, 16)
    analyzer = TrafficAnalyzer(conv, (x,))
    analyzer.unsupported_ops_warnings(False)
    expected = (3 * 16 * 16 + 8 * 3 * 3 * 3 + 8 + 8 * 8 * 8) * 4  # input + weights + bias + output, fp32
    assert conv_bytes(conv, [1, 3, 16, 16], [1, 8, 8, 8]) == expected
    assert analyzer.total() == expected


def test_traffic_model_of_the_tiny_net():
    """BN and activations move nothing; the residual add reads two tensors and writes one; the SE block
    reads its input twice (mean, product) and writes its output once."""
    model, x = _tiny()
    layers, unsupported = layer_costs(model, x)
    own = {layer.name: layer.bytes for layer in layers}
    fmap = 8 * 64 * 4
    assert own['bn'] == own['act'] == 0
    assert own['stem'] == (3 * 64 + 8 * 27 + 8 * 64) * 4
    assert own['pw'] == conv_bytes(model.pw, [1, 8, 8, 8], [1, 8, 8, 8])
    # the model's own ops: the residual add (3 maps) and the final mean (a map in, 8 values out)
    assert own[''] == 3 * fmap + fmap + 8 * 4
    # SE: mean (map in, 8 out), product (map and gate in, map out), plus its two convs
    assert own['se'] == (fmap + 8 * 4) + (fmap + 8 * 4 + fmap)
    assert unsupported == {}
    assert sum(own.values()) == TrafficAnalyzer(model, (x,)).total()


def test_flops_leave_batch_norm_out_and_kinds():
    model, x = _tiny()
    layers = {layer.name: layer for layer in layer_costs(model, x)[0]}
    assert layers['bn'].flops == 0
    assert layers['stem'].flops == 8 * 64 * 27 and layers['dw'].flops == 8 * 64 * 9
    kinds = {name: layer.kind for name, layer in layers.items()}
    assert kinds['stem'] == 'full conv' and kinds['dw'] == 'depthwise conv' and kinds['pw'] == 'pointwise conv'
    assert kinds['bn'] == 'BN' and kinds['act'] == 'SiLU' and kinds['fc'] == 'linear'
    assert kinds['se'] == kinds['se.fc1'] == 'SE'
    assert layer_kind(nn.Conv2d(8, 16, 3, groups=2)) == 'grouped conv'


def test_roofline_and_achieved_fraction():
    layers = [LayerCost('a', 'pointwise conv', flops=2_000_000, bytes=100_000, activations=0),  # compute: 2 ms
              LayerCost('b', 'SE', flops=0, bytes=300_000, activations=0)]  # memory: 3 ms
    roof = roofline_of(layers, MACHINE)
    assert roof.roofline_ms == pytest.approx(5.0)
    assert roof.compute_ms == pytest.approx(2.0) and roof.memory_ms == pytest.approx(4.0)
    assert achieved_fraction(roof.roofline_ms, 20.0) == pytest.approx(0.25)
    assert achieved_fraction(roof.roofline_ms, 20.0, batch_size=2) == pytest.approx(0.5)
    assert achieved_fraction(roof.roofline_ms, None) is None


@pytest.mark.parametrize('threads', [1, 2])
def test_machine_probe_is_positive_and_finite(threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        m = probe_machine(seconds=0.02, matmul_size=64, copy_mib=4, chunk_mib=1)
        assert torch.get_num_threads() == threads  # restored after the one-thread probe
    finally:
        torch.set_num_threads(before)
    for value in (m.peak_flops_per_s, m.bandwidth_bytes_per_s, m.one_thread_flops_per_s,
                  m.one_thread_bandwidth_bytes_per_s, m.median_flops_per_s, m.median_bandwidth_bytes_per_s):
        assert math.isfinite(value) and value > 0
    assert m.threads == threads
    assert m.peak_flops_per_s >= max(m.median_flops_per_s, threads * m.one_thread_flops_per_s)
    assert m.bandwidth_bytes_per_s >= max(m.median_bandwidth_bytes_per_s, m.one_thread_bandwidth_bytes_per_s)
    assert '64x64' in m.method and '1 MiB chunks of a 4 MiB' in m.method


def test_per_layer_table_columns_and_sums():
    model, x = _tiny()
    costs, _ = layer_costs(model, x)
    for clock in CLOCKS.values():
        times = module_times(model, lambda: model(x), runs=3, warmup=1, clock=clock)
        assert set(times) == {name for name, _ in model.named_modules()}
        assert all(len(t) == 3 for t in times.values())
        assert sum(statistics.median(t) for t in times.values()) > 0
    report = layer_report(costs, times, MACHINE, 'tiny', 'eager fp32', [8, 8], top=4)
    assert report.total_ms == pytest.approx(sum(r.ms for r in report.rows))
    assert sum(k.ms for k in report.kinds) == pytest.approx(report.total_ms)
    assert sum(k.share for k in report.kinds) == pytest.approx(1.0)
    assert sum(k.flops for k in report.kinds) == sum(c.flops for c in costs)
    assert sum(k.bytes for k in report.kinds) == sum(c.bytes for c in costs)
    assert report.roofline_ms == pytest.approx(roofline_of(costs, MACHINE).roofline_ms)
    assert [r.ms for r in report.rows] == sorted((r.ms for r in report.rows), reverse=True)
    for row in report.rows:
        assert row.fraction is None or row.fraction == pytest.approx(row.roofline_ms / row.ms)
    lines = markdown_layers(report).splitlines()
    assert '| kind | modules | ms | % of time | MFLOPs | MB | roofline ms | fraction |' in lines
    start = lines.index('| layer | kind | ms | % of time | MFLOPs | MB | roofline ms | fraction |')
    assert len(lines[start + 2:]) == 4  # the top 4
    assert any(line.startswith('| **all** | ') for line in lines)
    assert set(report.to_json()) >= {'model', 'path', 'total_ms', 'roofline_ms', 'fraction', 'kinds', 'rows'}


@pytest.mark.slow
def test_activations_match_regnet_paper():
    """RegNetX-800MF at 224x224: the paper's 5.15 M activations (its Table; its head adds 1000 outputs,
    less than the rounding), with the benchmark's features_only model and ActivationAnalyzer."""
    pytest.importorskip('timm')
    from mmengine.analysis import ActivationAnalyzer

    from rexnet_backbones.benchmark.models import BuiltModel
    built = BuiltModel.build('regnetx_008', (1, 2, 3, 4), False)
    analyzer = ActivationAnalyzer(built.model, (torch.zeros(1, 3, 224, 224),))
    analyzer.unsupported_ops_warnings(False)
    assert round(analyzer.total() / 1e6, 2) == 5.15
