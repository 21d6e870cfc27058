"""Benchmark of ReXNet models against references: size, FLOPs, speed per backend, accuracy.

The library behind ``tools/benchmark.py`` (which only parses the command line): see
:class:`Settings` for every option and :func:`run_benchmark` for the run. Modules, in the order of a
run: ``settings`` (options, backends, baselines), ``plan`` (what is measured), ``models`` (building
it, its batches and the timed call), ``costs`` (params, FLOPs, activations, bytes, per module),
``traffic`` (the traffic model), ``roofline`` (the machine's measured peak and bandwidth, roofline
time, achieved fraction), ``backends`` (the paths of ``backends``), ``measure`` (timing), ``ratios``
(comparison with the reference), ``layers`` (the per-layer table), ``results`` (typed results, JSON),
``report`` (environment, markdown, files) and ``run`` (the whole run).

Models are mmdet/mmseg configs (a file or ``package::relative/path.py`` inside an installed
OpenMMLab package) or timm model names (``rexnet_100``, ``regnetx_008``, ``rexnet_lite_100``),
built ``features_only`` with ``out_indices`` (default ``(1, 2, 3, 4)``, strides 4-32).

Models are built by :func:`rexnet_backbones.sources.build_source`, the model source of every tool.
Config models are built with every ``Pretrained`` ``init_cfg`` (and ``pretrained=``) removed, so
nothing is downloaded; they are initialised by their own ``init_weights()`` after
``torch.manual_seed(0)``. Weights do not change speed or FLOPs, except for the number of RPN
proposals of two-stage detectors (the RoI head runs on them); it is recorded in the JSON.

What is reported per model (the JSON has all raw numbers and the environment):

* params: all parameters of the model, and of ``model.backbone`` (timm models: the model).
* GFLOPs: ``mmengine.analysis.FlopAnalyzer`` (fvcore's counter: one multiply-add = one FLOP, the
  convention of mmdet's ``get_flops.py`` and of the papers) for one image of the given size, of
  exactly the call that is timed (see below), and of ``model.backbone`` alone on the same tensor.
  Element-wise ops (activations, additions) and ops such as NMS are not counted.
* latency (without ``backends``): for each batch size B, B random HxW images and their data samples
  (img_shape = HxW, scale 1) go through ``model.data_preprocessor`` ONCE (normalisation and padding
  to the size divisor, e.g. 800x1333 -> 800x1344: not timed). What is timed is then one call
  ``model(inputs, data_samples, mode='tensor')`` in eval mode under ``torch.no_grad()``: mmdet's
  ``_forward`` = backbone + neck + head outputs. For one-stage detectors (RetinaNet) that is the
  raw class/box maps without box decoding or NMS; for two-stage detectors it includes the RPN's
  proposal decoding + NMS and the RoI head on those proposals. For segmentors it is
  ``EncoderDecoder._forward``. With ``backbone_only`` it is ``model.backbone(inputs)``; a timm
  model is called on a seeded random ``N(0, 1)`` batch. After ``warmup`` untimed calls, each of
  ``runs`` calls is timed with ``time.perf_counter`` (on CUDA between synchronisations);
  latency = median per batch (ms), throughput = B / median latency.
* backends (``backends=[...]``, CPU, batch ``batch_sizes[0]``): the same call on ``eager`` torch,
  ``channels_last``, ``compile`` (``torch.compile`` of the channels_last model), ``onnxruntime``
  (CPU provider, default graph optimisations) and ``openvino`` (CPU, ``PERFORMANCE_HINT=LATENCY``,
  explicit ``INFERENCE_PRECISION_HINT``; the precision and execution devices the compiled model
  reports are recorded). With ``deploy`` each backend also runs the deploy form of the model
  (:func:`rexnet_backbones.deploy.deploy_model`: BN folded, ReXNet widths zero-padded to
  ``channel_multiple``, cheaper partial residual). Every (model, backend) pair is warmed up, then
  the timed calls go round-robin over all of them (run ``i`` of every pair before run ``i + 1``),
  so that a change of machine load hits all columns alike. Columns: median ms, ratio to the
  reference model on the same backend, and parity = max |output - eager fp32 output| on the same
  input. ``bf16`` in ``precisions`` adds bf16 columns (torch autocast, OpenVINO bf16) with their
  deviation from eager fp32; ``int8`` adds int8 columns of the ONNX runtimes, which run a post-training int8
  (QDQ) file of :func:`rexnet_backbones.deploy.quantize.quantize_onnx` calibrated on ``calib_images``
  seeded random inputs made as the timed one (or images of ``calib`` resized to the input size), with their
  deviation from eager fp32. "best" is the fastest fp32 path whose parity is within ``tolerance``.
* cost model (every run): activations = output elements of every conv and matmul
  (``mmengine.analysis.ActivationAnalyzer``, RegNet's metric), bytes moved per image under the
  traffic model of :mod:`.traffic` (each conv reads its input and weights and writes its output once,
  BN folded, activations fused; other element-wise ops, pooling and concatenation read their inputs
  and write their output once), and the roofline time of one image on this machine's fp32 peak
  (best rate of a 256x256 ``torch.mm``) and bandwidth (best rate of copying 4 MiB chunks of a 64 MiB
  tensor), with one thread and the run's threads, both measured by the run itself in a few seconds
  (:mod:`.roofline`): the sum over modules of max(own FLOPs / peak,
  own bytes / bandwidth). Per CPU path, the achieved fraction = roofline x batch / measured median.
* per-layer table (``layers=N``, first model): each module's own time by forward hooks on eager (or
  channels_last, or the deploy form) fp32, with its FLOPs, bytes, roofline time and fraction; the
  top N layers by time and a summary per kind of layer (:mod:`.layers`).
* training step (``train_step``): peak memory above the model, step time and the tensors autograd keeps,
  of one training step of each config, each in a fresh process: see :mod:`.train_step`.
* accuracy (optional): with ``checkpoints`` (one per config, ``none`` to skip one) each checkpoint
  is evaluated on the config's test set with :func:`rexnet_backbones.engine.test`.
"""
from .backends import BackendRun
from .costs import Costs
from .models import BuiltModel, resolve_config
from .plan import PlannedModel, plan
from .layers import LayerReport, markdown_layers
from .report import markdown, markdown_backends, markdown_costs, write_outputs
from .results import BestPath, Environment, ModelResult, PathResult, Report, ReportSettings, Timing
from .roofline import MachinePeak, Roofline, machine_peak, probe_machine
from .run import run_benchmark
from .settings import BACKENDS, BASELINES, REFERENCE, Settings
from ..errors import BenchmarkError
from .train_report import TrainStepReport, markdown_train_steps, run_train_step_benchmark, write_train_step_outputs
from .train_step import TrainStepResult

__all__ = ['BACKENDS', 'BASELINES', 'REFERENCE', 'Settings', 'BenchmarkError', 'plan', 'PlannedModel',
           'run_benchmark', 'write_outputs', 'markdown', 'markdown_backends', 'Report', 'ReportSettings',
           'Environment', 'ModelResult', 'PathResult', 'BestPath', 'Timing', 'Costs', 'BackendRun',
           'BuiltModel', 'resolve_config', 'markdown_costs', 'markdown_layers', 'LayerReport', 'MachinePeak',
           'Roofline', 'machine_peak', 'probe_machine', 'TrainStepReport', 'TrainStepResult',
           'run_train_step_benchmark', 'markdown_train_steps', 'write_train_step_outputs']
