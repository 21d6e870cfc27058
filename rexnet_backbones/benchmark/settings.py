"""What a benchmark run is asked to do: its options (:class:`Settings`), the backends and baselines it
knows, the error of a bad request and the progress log (stderr)."""
from __future__ import annotations

import datetime
import os.path as osp
import sys
from dataclasses import dataclass
from typing import List, Optional, Tuple

from ..deploy.runtime import INSTALL_HINT
from ..errors import BenchmarkError

__all__ = ['BASELINES', 'REFERENCE', 'TORCH_BACKENDS', 'GRAPH_BACKENDS', 'BACKENDS', 'BF16_BACKENDS',
           'INT8_BACKENDS', 'PRECISIONS', 'INSTALL_HINT', 'Settings', 'log']

#: (label, config) of mmdet's own detectors added by ``baselines``
BASELINES = [
    ('RetinaNet R-18', 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'),
    ('RetinaNet RegNetX-800MF', 'mmdet::regnet/retinanet_regnetx-800MF_fpn_1x_coco.py'),
    ('RetinaNet R-50', 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'),
    ('Faster R-CNN RegNetX-400MF', 'mmdet::regnet/faster-rcnn_regnetx-400MF_fpn_ms-3x_coco.py'),
]

#: default reference (``reference='auto'``): RegNetX-800MF as a timm name or mmdet's RetinaNet config
REFERENCE = ('regnetx_008', 'mmdet::regnet/retinanet_regnetx-800MF_fpn_1x_coco.py')

TORCH_BACKENDS = ('eager', 'channels_last', 'compile')
GRAPH_BACKENDS = ('onnxruntime', 'openvino')
BACKENDS = TORCH_BACKENDS + GRAPH_BACKENDS
#: backends that have a bf16 column with ``precisions=('fp32', 'bf16')``
BF16_BACKENDS = ('eager', 'channels_last', 'openvino')
#: backends that have an int8 column with ``precisions=(..., 'int8')``: the post-training int8 (QDQ) file of
#: :func:`rexnet_backbones.deploy.quantize.quantize_onnx`, which both ONNX runtimes run
INT8_BACKENDS = GRAPH_BACKENDS
DEPLOY_MODES = ('off', 'on', 'both')  # also the values of mem_efficient
PRECISIONS = ('fp32', 'bf16', 'int8')


@dataclass
class Settings:
    """Everything a benchmark run depends on (the command-line options of ``tools/benchmark.py``)."""
    models: List[str]
    baselines: bool = False
    input_size: Tuple[int, int] = (800, 1333)
    batch_sizes: Tuple[int, ...] = (1, 4)
    runs: int = 10
    warmup: int = 3
    device: Optional[str] = None
    threads: Optional[int] = None
    backbone_only: bool = False
    checkpoints: Optional[List[str]] = None
    work_dir: str = osp.join('work_dirs', 'benchmark')
    #: backends to compare side by side (CPU); empty: the classic per-device latency table
    backends: Tuple[str, ...] = ()
    #: 'off': models as built; 'on': deploy forms only; 'both': both, side by side
    deploy: str = 'off'
    #: 'auto' (RegNetX-800MF when it is measured), 'none', or a model to add as the reference
    reference: str = 'auto'
    out_indices: Tuple[int, ...] = (1, 2, 3, 4)
    precisions: Tuple[str, ...] = ('fp32',)
    channel_multiple: int = 8
    tolerance: float = 1e-4
    #: the per-layer table of the first model: its top ``layers`` layers by time (None: no table)
    layers: Optional[int] = None
    #: measure a training step (memory, time, saved tensors) of each config instead (see ``train_step``)
    train_step: bool = False
    #: with ``train_step``: ReXNet backbones' memory-efficient training forward 'on', 'off' or 'both'
    mem_efficient: str = 'on'
    #: with ``train_step``: torch.compile 'off', 'on' or 'both' (eager and compiled side by side)
    compile: str = 'off'
    #: with ``train_step``: weights and inputs in channels-last memory format
    channels_last: bool = False
    #: with ``train_step``: 'fp32', or 'bf16' (forward and loss under torch.autocast in bfloat16)
    train_dtype: str = 'fp32'
    #: int8 paths: calibrate on images of this folder (resized to the input size), else on seeded random inputs
    calib: Optional[str] = None
    #: int8 paths: the number of calibration inputs (images or random batches)
    calib_images: int = 4

    def check(self) -> None:
        """Raise :class:`BenchmarkError` for values no run can use."""
        if any(b < 1 for b in self.batch_sizes):
            raise BenchmarkError('--batch-sizes must be positive')
        if self.runs < 0 or self.warmup < 0:
            raise BenchmarkError('--runs and --warmup must be >= 0')
        if any(s < 1 for s in self.input_size):
            raise BenchmarkError('--input-size must be positive')
        if self.threads is not None and self.threads < 1:
            raise BenchmarkError('--threads must be >= 1')
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise BenchmarkError(f'unknown backend(s) {unknown}; choose from {list(BACKENDS)}')
        if self.deploy not in DEPLOY_MODES:
            raise BenchmarkError(f"--deploy must be 'off', 'on' or 'both', got {self.deploy!r}")
        if any(p not in PRECISIONS for p in self.precisions) or 'fp32' not in self.precisions:
            raise BenchmarkError(f"--precisions: 'fp32' and optionally 'bf16' and 'int8', got {list(self.precisions)}")
        self._check_int8()
        if self.layers is not None and (self.layers < 1 or self.runs < 1):
            raise BenchmarkError('--layers N needs N >= 1 and --runs >= 1 (the layers are timed)')
        if self.mem_efficient not in DEPLOY_MODES:
            raise BenchmarkError(f"--mem-efficient must be 'on', 'off' or 'both', got {self.mem_efficient!r}")
        if self.train_step and (self.backends or self.checkpoints):
            raise BenchmarkError('--train-step measures training steps; leave out --backends and --checkpoints '
                                 '(use --compile and --channels-last)')
        if not self.train_step and (self.compile != 'off' or self.channels_last or self.train_dtype != 'fp32'):
            raise BenchmarkError('--compile, --channels-last and --train-dtype go with --train-step (for inference '
                                 'use --backends eager channels_last compile and --precisions)')
        if self.compile not in DEPLOY_MODES:
            raise BenchmarkError(f"--compile must be 'on', 'off' or 'both', got {self.compile!r}")
        if self.train_dtype not in ('fp32', 'bf16'):
            raise BenchmarkError(f"--train-dtype must be 'fp32' or 'bf16', got {self.train_dtype!r}")
        if self.train_step and self.device == 'cuda':
            import torch
            if not torch.cuda.is_available():
                raise BenchmarkError('--device cuda: no CUDA device is visible (torch '
                                     f'{torch.__version__}); leave out --device to measure on the CPU')
        if self.backends and self.device == 'cuda':
            raise BenchmarkError('--backends compares CPU backends: use --device cpu (or leave it out)')

    def _check_int8(self) -> None:
        if 'int8' not in self.precisions:
            if self.calib is not None:
                raise BenchmarkError('--calib calibrates the int8 paths: add int8 to --precisions, or leave '
                                     'out --calib')
            return
        if not any(b in INT8_BACKENDS for b in self.backends):
            raise BenchmarkError(f'--precisions int8 runs on {" or ".join(INT8_BACKENDS)}: add one of them to '
                                 '--backends')
        if self.calib_images < 1:
            raise BenchmarkError(f'--calib-images must be >= 1, got {self.calib_images}')

    @property
    def deploy_variants(self) -> List[bool]:
        """``False`` (the model as built) and/or ``True`` (its deploy form), per ``deploy``."""
        return {'off': [False], 'on': [True], 'both': [False, True]}[self.deploy]


def log(message: str) -> None:
    """One progress line on stderr (stdout is kept for the table)."""
    stamp = datetime.datetime.now().strftime('%H:%M:%S')
    print(f'[benchmark {stamp}] {message}', file=sys.stderr, flush=True)
