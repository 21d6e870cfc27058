"""The memory-efficient training forward of ReXNet v1 (rexnet_backbones.models.mem_efficient): the same
outputs and gradients as timm's modules, the same state_dict, fewer bytes kept for backward."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.rexnet import LinearBottleneck

from rexnet_backbones.mm.backbone import ReXNet
from rexnet_backbones.models import convert_mem_efficient
from rexnet_backbones.models.conv_bn_act import ConvBnAct
from rexnet_backbones.models.mem_efficient import (MemEfficientConvBnAct, MemEfficientLinearBottleneck, bn_act_conv,
                                                   silu_after_bn)


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def _bn(channels: int, training: bool) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    return bn.train(training)


@pytest.mark.parametrize('training', [False, True])
def test_silu_after_bn_gradcheck(training):
    """silu_after_bn(bn(y), y) is SiLU of the BN output: forward bit-exact, gradients by gradcheck (double)."""
    torch.manual_seed(0)
    bn = _bn(3, training)
    y = torch.randn(2, 3, 5, 4, dtype=torch.double, requires_grad=True)

    def saving(y):
        return silu_after_bn(F.batch_norm(y, None, None, bn.weight, bn.bias, True, 0.0, bn.eps) if training
                             else F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0,
                                               bn.eps), y, bn)

    def standard(y):
        return nn.SiLU()(F.batch_norm(y, None, None, bn.weight, bn.bias, True, 0.0, bn.eps) if training
                         else F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0,
                                           bn.eps))

    assert torch.equal(saving(y), standard(y))
    assert torch.autograd.gradcheck(saving, (y,))
    g = torch.randn_like(standard(y))
    assert torch.equal(torch.autograd.grad(saving(y), y, g)[0], torch.autograd.grad(standard(y), y, g)[0])


def test_bn_act_conv_gradcheck():
    """conv(silu(bn(y))) and conv(relu6(bn(y) * gate)) through bn_act_conv pass gradcheck (double)."""
    torch.manual_seed(0)
    bn = _bn(4, training=False)
    dw = nn.Conv2d(4, 4, 3, padding=1, groups=4).double()
    pw = nn.Conv2d(4, 3, 1, bias=False).double()
    y = torch.randn(2, 4, 5, 5, dtype=torch.double, requires_grad=True)
    gate = torch.rand(2, 4, 1, 1, dtype=torch.double, requires_grad=True)
    z = lambda t: F.batch_norm(t, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)  # noqa
    assert torch.equal(bn_act_conv(z(y), y, None, bn, 'silu', dw), dw(F.silu(z(y))))
    assert torch.equal(bn_act_conv(z(y), y, gate, bn, 'relu6', pw), pw(F.relu6(z(y) * gate)))
    assert torch.autograd.gradcheck(lambda t, w: bn_act_conv(z(t), t, None, bn, 'silu', dw), (y, dw.weight))
    # relu6 has kinks at 0 and 6: keep the values clear of them for the finite differences
    y2 = (torch.rand(2, 4, 5, 5, dtype=torch.double) * 2 + 0.5) * torch.sign(torch.randn(2, 4, 5, 5)).double()
    y2 = (y2 * bn.running_var.sqrt().view(1, -1, 1, 1) / bn.weight.view(1, -1, 1, 1)).detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda t, g: bn_act_conv(z(t), t, g, bn, 'relu6', pw), (y2, gate))


def _saved_bytes(module, x):
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    seen = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module(x)
    return out, sum(seen.values())


@pytest.mark.parametrize('norm_eval', [True, False])
def test_backbone_same_outputs_gradients_and_state_fewer_saved_bytes(norm_eval):
    """The mm backbone (mem_efficient by default) against timm's modules in training: outputs bit-exact,
    gradients within 1e-6, the same running statistics, state_dict keys, and less than half the saved bytes."""
    torch.manual_seed(0)
    saving = ReXNet('rexnet_100', norm_eval=norm_eval, frozen_stages=1).train()
    standard = ReXNet('rexnet_100', norm_eval=norm_eval, frozen_stages=1, mem_efficient=False).train()
    standard.load_state_dict(saving.state_dict())
    assert list(saving.state_dict()) == list(standard.state_dict())
    assert isinstance(saving.features[4], MemEfficientLinearBottleneck)
    assert type(standard.features[4]) is LinearBottleneck and type(standard.stem) is ConvBnAct
    assert type(standard.stem.bn) is nn.BatchNorm2d and type(saving.stem) is MemEfficientConvBnAct
    x = torch.randn(2, 3, 64, 96)
    outs, saved = _saved_bytes(saving, x)
    ref_outs, ref_saved = _saved_bytes(standard, x)
    assert all(torch.equal(a, b) for a, b in zip(outs, ref_outs))
    assert saved < 0.5 * ref_saved, (saved, ref_saved)
    sum(o.square().mean() for o in outs).backward()
    sum(o.square().mean() for o in ref_outs).backward()
    for (name, p), q in zip(saving.named_parameters(), standard.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, rtol=1e-6, atol=1e-6 * q.grad.abs().max().item()), name
    assert all(torch.equal(a, b) for a, b in zip(saving.buffers(), standard.buffers()))


def test_convert_round_trip_and_eval_path():
    """convert_mem_efficient switches classes both ways; eval and no_grad calls run timm's forward."""
    import timm
    model = timm.create_model('rexnet_100', num_classes=0).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
    convert_mem_efficient(model)
    assert isinstance(model.stem, MemEfficientConvBnAct)
    with torch.no_grad():
        assert torch.equal(model(x), ref)
    assert torch.equal(model(x), ref)  # eval mode with autograd: the same values
    convert_mem_efficient(model, enabled=False)
    assert not any(isinstance(m, (MemEfficientConvBnAct, MemEfficientLinearBottleneck)) for m in model.modules())
    assert type(model.stem) is ConvBnAct and type(model.features[4]) is LinearBottleneck
    with torch.no_grad():
        assert torch.equal(model(x), ref)


def test_trace_keeps_timm_graph():
    """torch.jit.trace (the ONNX path) sees timm's forward: no custom autograd Function in the graph."""
    model = copy.deepcopy(ReXNet('rexnet_100')).eval()
    traced = torch.jit.trace(model, torch.randn(1, 3, 64, 64))
    assert 'PythonOp' not in str(traced.inlined_graph)
