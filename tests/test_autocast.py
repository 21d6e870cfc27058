"""Mixed precision that is right by construction: under ``torch.autocast`` (float16 and bfloat16, contiguous and
channels-last) every backward kernel of a ReXNet training step gets the dtypes that CUDA's kernels require --
one dtype for a convolution's gradient, input and weight; an activation's gradient in its input's dtype; a
BatchNorm's gradient in its input's dtype. CPU kernels accept mixed dtypes, so running is not enough: the
kernels' arguments are recorded with a ``TorchDispatchMode``. The memory-efficient path (the backbone's default)
must also give the plain path's outputs and gradients, and so must the SE BatchNorm for a batch of one and
ReXNet-lite."""
from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

pytest.importorskip('mmengine')
from rexnet_backbones.mm.backbone import ReXNet  # noqa: E402

aten = torch.ops.aten


pytestmark = pytest.mark.usefixtures('one_torch_thread')


class _RecordKernels(TorchDispatchMode):
    """``[(op, dtypes of its floating-point tensor arguments in order)]`` of every kernel called."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        flat, _ = tree_flatten((args, kwargs or {}))
        self.calls.append((func.overloadpacket, [a.dtype if isinstance(a, torch.Tensor) else None for a in flat]))
        return func(*args, **(kwargs or {}))


def _problems(calls) -> list:
    """Kernel calls whose dtypes a CUDA kernel would reject."""
    bad = []
    for op, dtypes in calls:
        if op is aten.convolution_backward:
            grad, inp, weight = dtypes[:3]
            if not grad == inp == weight:
                bad.append(('convolution_backward', grad, inp, weight))
        elif op in (aten.silu_backward, aten.hardtanh_backward, aten.threshold_backward, aten.sigmoid_backward):
            if dtypes[0] != dtypes[1]:
                bad.append((str(op), dtypes[0], dtypes[1]))
        elif op in (aten.native_batch_norm_backward,):
            if dtypes[0] != dtypes[1]:  # grad_out and input
                bad.append((str(op), dtypes[0], dtypes[1]))
    return bad


def _conv_backward_dtypes(calls) -> Counter:
    return Counter(tuple(d[:3]) for op, d in calls if op is aten.convolution_backward)


def _step(model: nn.Module, x: torch.Tensor, dtype: torch.dtype):
    """A training forward under autocast and a backward whose kernels are recorded; returns
    (outputs, {name: grad}, kernel calls)."""
    model.zero_grad(set_to_none=True)
    with torch.autocast('cpu', dtype=dtype):
        outs = model(x)
    loss = sum(o.float().square().mean() for o in outs)
    with _RecordKernels() as rec:
        loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return outs, grads, rec.calls


def _pair(arch: str, channels_last: bool):
    torch.manual_seed(0)
    saving = ReXNet(arch, out_indices=(2, 3, 4)).train()
    plain = ReXNet(arch, out_indices=(2, 3, 4), mem_efficient=False).train()
    plain.load_state_dict(saving.state_dict())
    if channels_last:
        saving, plain = saving.to(memory_format=torch.channels_last), plain.to(memory_format=torch.channels_last)
    return saving, plain


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16], ids=['bf16', 'fp16'])
@pytest.mark.parametrize('channels_last', [False, True], ids=['contiguous', 'channels_last'])
@pytest.mark.parametrize('arch,batch', [('rexnet_100', 2), ('rexnet_100', 1), ('rexnet_lite_100', 2)],
                         ids=['v1', 'v1-batch1', 'lite'])
def test_backward_kernels_get_one_dtype_and_gradients_match(dtype, channels_last, arch, batch):
    saving, plain = _pair(arch, channels_last)
    x = torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    outs, grads, calls = _step(saving, x, dtype)
    ref_outs, ref_grads, ref_calls = _step(plain, x, dtype)

    assert _problems(calls) == [] and _problems(ref_calls) == []
    conv = _conv_backward_dtypes(calls)
    assert set(conv) == {(dtype, dtype, dtype)}, conv  # every conv's backward runs in the autocast dtype
    assert conv == _conv_backward_dtypes(ref_calls)  # the same convolutions as the plain path
    # the outputs follow autocast as torch's own ops do: the same dtypes and values as the plain path
    assert [o.dtype for o in outs] == [o.dtype for o in ref_outs] == [dtype] * 3
    assert all(torch.equal(a, b) for a, b in zip(outs, ref_outs))
    # gradients reach the parameters in their own dtype, equal to the plain path's up to summation order
    assert grads.keys() == ref_grads.keys() and grads
    for name, g in grads.items():
        r = ref_grads[name]
        assert g.dtype == r.dtype == torch.float32, name
        assert torch.allclose(g, r, rtol=1e-2, atol=1e-2 * r.abs().max().item()), name


def test_memory_saving_path_is_taken_under_autocast():
    """The memory-efficient functions run (not a fallback): a step records their recomputation of the BN in
    backward, which the plain path does not have."""
    saving, plain = _pair('rexnet_100', False)
    x = torch.randn(2, 3, 64, 64)
    _, _, calls = _step(saving, x, torch.bfloat16)
    _, _, ref_calls = _step(plain, x, torch.bfloat16)
    def norms(calls):
        return sum(1 for op, _ in calls if 'batch_norm' in str(op) and 'backward' not in str(op))
    assert norms(calls) > 0 and norms(ref_calls) == 0
