"""The roofline of a model on this machine: the machine's peak compute and memory bandwidth, measured
by the benchmark itself in a few seconds, and the time a model (or one layer) would take at them.

* Peak: the best rate of an fp32 ``torch.mm`` of two ``n x n`` matrices (n = 256: three 256 KiB
  matrices, they fit in a core's L2 cache) with the run's torch threads, in multiply-adds per second
  (the FLOP convention of ``FlopAnalyzer``: one multiply-add = one FLOP).
* Bandwidth: the best rate of ``dst[i:j].copy_(src[i:j])`` over 4 MiB chunks of a 64 MiB fp32 tensor,
  streamed in order (source and destination, 128 MiB, are larger than a common last-level cache, so
  each chunk comes from memory), counting the bytes read and written.
* Both run for about a second each and the best call counts: short calls are the likeliest to run
  undisturbed on a shared machine. Both are measured with one thread and with the run's T threads: the
  peak is the larger of T x the one-thread peak (each core has its own FMA units) and the T-thread
  rate, the bandwidth the larger of the two rates (never scaled). On a busy machine a T-thread call
  that loses one of its cores to another job waits for it, so the T-thread rates can be far below the
  machine's; the median rates are recorded too (far below the best: other jobs took the cores).
* Roofline time, layer by layer: each module's own (self) FLOPs and bytes, ``max(flops / peak,
  bytes / bandwidth)``, summed over the modules. BatchNorm FLOPs are left out (folded, as in the
  traffic model of :mod:`.traffic`). The compute and memory bounds of the whole model are given too.
* Achieved fraction of a path = roofline time x batch size / measured time (1 = at the roofline).
"""
from __future__ import annotations

import functools
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

__all__ = ['MachinePeak', 'LayerCost', 'Roofline', 'probe_machine', 'machine_peak', 'roofline_of',
           'achieved_fraction', 'PROBE_METHOD']

PROBE_METHOD = ('peak: best rate of an fp32 torch.mm of two {n}x{n} matrices (multiply-adds/s, one '
                'multiply-add = one FLOP as FlopAnalyzer counts); bandwidth: best rate of copying {chunk} MiB '
                'chunks of a {mib} MiB fp32 tensor in order, bytes read + written; each with 1 and {threads} '
                'torch thread(s): peak = max({threads} x 1-thread peak, {threads}-thread peak), bandwidth = the '
                'larger rate; {seconds:.1f} s in all')


@dataclass
class MachinePeak:
    """The machine's measured fp32 peak and memory bandwidth (the roofline's two slopes)."""
    #: multiply-adds per second (FlopAnalyzer's FLOPs)
    peak_flops_per_s: float
    bandwidth_bytes_per_s: float
    #: the best rates with one thread
    one_thread_flops_per_s: float
    one_thread_bandwidth_bytes_per_s: float
    #: the median rates with ``threads`` threads (far below the best: the machine was busy)
    median_flops_per_s: float
    median_bandwidth_bytes_per_s: float
    threads: int
    matmul_size: int
    copy_mib: int
    chunk_mib: int
    seconds: float
    method: str

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """``peak 103.6 GFLOP/s (multiply-adds), bandwidth 32.1 GB/s, 2 thread(s) (1 thread: ...)``."""
        return (f'peak {self.peak_flops_per_s / 1e9:.1f} GFLOP/s (multiply-adds), bandwidth '
                f'{self.bandwidth_bytes_per_s / 1e9:.1f} GB/s, {self.threads} thread(s) (1 thread: '
                f'{self.one_thread_flops_per_s / 1e9:.1f} GFLOP/s, {self.one_thread_bandwidth_bytes_per_s / 1e9:.1f} '
                f'GB/s; median {self.threads}-thread rates {self.median_flops_per_s / 1e9:.1f} GFLOP/s, '
                f'{self.median_bandwidth_bytes_per_s / 1e9:.1f} GB/s)')


@dataclass
class LayerCost:
    """One module's own costs for one image (its ops, not its children's)."""
    name: str
    kind: str
    #: FlopAnalyzer FLOPs (multiply-adds), BatchNorm left out (folded)
    flops: int
    bytes: int
    activations: int

    def roofline_ms(self, machine: MachinePeak) -> float:
        return 1000.0 * max(self.flops / machine.peak_flops_per_s, self.bytes / machine.bandwidth_bytes_per_s)


@dataclass
class Roofline:
    """The time of one image at the machine's peak and bandwidth."""
    #: sum over modules of max(compute, memory) time
    roofline_ms: float
    #: all FLOPs at the peak
    compute_ms: float
    #: all bytes at the bandwidth
    memory_ms: float


def _rates(work: float, call: Callable[[], Any], seconds: float, min_calls: int = 10) -> Tuple[float, float]:
    """``work`` / the shortest and / the median time of ``call`` over about ``seconds`` (after one
    untimed call)."""
    call()
    times: List[float] = []
    while len(times) < min_calls or sum(times) < seconds:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return work / min(times), work / statistics.median(times)


def _matmul_rates(n: int, seconds: float) -> Tuple[float, float]:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
    out = torch.empty(n, n)
    return _rates(float(n) ** 3, lambda: torch.mm(a, b, out=out), seconds)


def _copy_rates(mib: int, chunk_mib: int, seconds: float) -> Tuple[float, float]:
    src = torch.ones(mib * 2 ** 20 // 4)
    dst = torch.empty_like(src)
    step = chunk_mib * 2 ** 20 // 4
    chunks = [(dst[i:i + step], src[i:i + step]) for i in range(0, src.numel(), step)]
    turn = iter(range(1 << 62))

    def copy_next_chunk() -> None:
        d, s = chunks[next(turn) % len(chunks)]
        d.copy_(s)
    return _rates(2.0 * step * 4, copy_next_chunk, seconds)


def probe_machine(seconds: float = 1.0, matmul_size: int = 256, copy_mib: int = 64, chunk_mib: int = 4) -> MachinePeak:
    """Measure the fp32 matmul peak and the copy bandwidth with the current torch threads (about
    ``seconds`` each)."""
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        peak_1, _ = _matmul_rates(matmul_size, seconds / 2 if threads > 1 else seconds)
        bandwidth_1, _ = _copy_rates(copy_mib, chunk_mib, seconds / 2 if threads > 1 else seconds)
    finally:
        torch.set_num_threads(threads)
    peak, peak_median, bandwidth, bandwidth_median = peak_1, peak_1, bandwidth_1, bandwidth_1
    if threads > 1:
        peak, peak_median = _matmul_rates(matmul_size, seconds)
        bandwidth, bandwidth_median = _copy_rates(copy_mib, chunk_mib, seconds)
    spent = time.perf_counter() - t0
    return MachinePeak(peak_flops_per_s=max(peak, threads * peak_1), bandwidth_bytes_per_s=max(bandwidth, bandwidth_1),
                       one_thread_flops_per_s=peak_1, one_thread_bandwidth_bytes_per_s=bandwidth_1,
                       median_flops_per_s=peak_median, median_bandwidth_bytes_per_s=bandwidth_median,
                       threads=threads, matmul_size=matmul_size, copy_mib=copy_mib, chunk_mib=chunk_mib,
                       seconds=round(spent, 2),
                       method=PROBE_METHOD.format(n=matmul_size, chunk=chunk_mib, mib=copy_mib, threads=threads,
                                                  seconds=spent))


@functools.lru_cache(maxsize=None)
def _cached_peak(threads: int) -> MachinePeak:
    return probe_machine()


def machine_peak() -> MachinePeak:
    """:func:`probe_machine` once per process and number of torch threads (a run's cache)."""
    return _cached_peak(torch.get_num_threads())


def roofline_of(layers: List[LayerCost], machine: MachinePeak) -> Roofline:
    """The layer-by-layer roofline of one image, and the model's compute and memory bounds."""
    flops = sum(layer.flops for layer in layers)
    traffic = sum(layer.bytes for layer in layers)
    return Roofline(roofline_ms=sum(layer.roofline_ms(machine) for layer in layers),
                    compute_ms=1000.0 * flops / machine.peak_flops_per_s,
                    memory_ms=1000.0 * traffic / machine.bandwidth_bytes_per_s)


def achieved_fraction(roofline_ms: float, measured_ms: Optional[float], batch_size: int = 1) -> Optional[float]:
    """Roofline time of the batch (``roofline_ms`` per image x ``batch_size``) / measured time."""
    if measured_ms is None or not measured_ms > 0:
        return None
    return roofline_ms * batch_size / measured_ms
