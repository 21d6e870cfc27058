"""rexnet_backbones: ReXNet (v1 and lite) as timm models and as an OpenMMLab backbone."""
import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

CONFIGS_LINK = os.path.join('rexnet_backbones', '.mim', 'configs')
CONFIG_FILES = ['**/*.py']


class BuildPyWithConfigs(build_py):
    """Refuse to build without the configs (a checkout whose symlink became a plain file)."""

    def run(self) -> None:
        if not os.path.isfile(os.path.join(CONFIGS_LINK, 'det', 'retinanet_rexnet.py')):
            raise SystemExit(f'{CONFIGS_LINK} must be a symlink to ../../configs (git clone with '
                             'core.symlinks=true), or a copy of configs/')
        super().run()

# Supported ranges, as a library declares them: `pip install` into an existing OpenMMLab environment keeps
# its torch (and the mmcv compiled for it). The exact tested set is requirements/constraints.txt, which
# `make setup` passes to every pip install (-c). Each bound comes from what the code uses:
# - torch >= 2.6: checkpoint safety rests on torch.load(weights_only=True) being the default (2.6) with our
#   add_safe_globals allowlist; ONNX export uses torch.export.Dim.AUTO (2.6). < 3: a new major.
# - torchvision >= 0.21: the release paired with torch 2.6 (each torchvision needs its own torch).
# - timm >= 1.0.29: rexnet_lite uses timm.layers.get_device_dtype (first in 1.0.29; absent in 1.0.28);
#   < 1.1: we subclass timm.models.rexnet and use timm.models._features (private), which a minor may move.
# - numpy >= 1.26, < 3: both major lines; the tested set has numpy 2.
TORCH = ['torch>=2.6,<3', 'torchvision>=0.21,<1']
CORE = TORCH + ['timm>=1.0.29,<1.1', 'numpy>=1.26,<3', 'safetensors>=0.4']
# mmcv has no wheels for torch >= 2.6 on PyPI (2.1.0 is an sdist that needs --no-build-isolation and a C++20
# patch): tools/install_mmcv.sh builds it, with CUDA kernels when torch has CUDA and nvcc is found.
MM = [
    # < 0.11: we use mmengine internals (evaluator.metric._to_cpu; the types its checkpoints pickle, which we
    # allowlist for weights_only loading); 0.10 is the series mmdet 3.3 / mmseg 1.2 were released against.
    'mmengine>=0.10,<0.11',
    # the range mmdet 3.3 and mmsegmentation 1.2 assert on import (>=2.0.0rc4,<2.2.0)
    'mmcv>=2.0.0,<2.2.0',
    # mmdet 3.2/3.3 and mmseg 1.2 are the releases that accept mmcv 2.1 (mmdet 3.1.0 and mmseg 1.1.0 assert
    # mmcv<2.1.0, checked in their wheels); the next minor may move the mmcv range again.
    'mmdet>=3.2,<3.4',
    'mmsegmentation>=1.2,<1.3',
    'pycocotools',
    # undeclared runtime imports of mmseg.models
    'ftfy',
    'regex',
    # mmengine 0.10.7 imports pkg_resources (removed in setuptools 82); torch 2.14 requires >= 77.0.3.
    # setuptools 80.9 to 81 warn about pkg_resources: our tools filter that one warning,
    # and the constraints pin 80.8.0, which does not warn.
    'setuptools>=77.0.3,<82',
]
# mkdocs + mkdocstrings: the docs site (mkdocs.yml), built with --strict by tests/test_docs_site.py;
# import-linter: `lint-imports` checks the layer contract in .importlinter (tests/test_layers.py);
# 2.x has the acyclic_siblings contract it uses.
DEV = ['pytest>=8', 'matplotlib', 'psutil', 'mkdocs>=1.6,<2', 'mkdocstrings[python]>=0.29',
       'import-linter>=2.17,<3']
# ONNX export / ONNX Runtime / OpenVINO (rexnet_backbones.deploy, tools/export.py); lower bounds = the
# versions tested with torch 2.14.1 (onnxscript: torch's dynamo-based exporter, `--dynamo`).
DEPLOY = ['onnx>=1.23', 'onnxruntime>=1.32', 'openvino>=2026.4', 'onnxscript>=0.7']

LONG_DESCRIPTION = """\
ReXNet (Han et al., *Rethinking Channel Dimensions for Efficient Model Design*, CVPR 2021) as timm models
(ReXNet v1 and ReXNet-lite, with `features_only` feature pyramids and conversion of the official checkpoints)
and as `type='ReXNet'`, a backbone in the mmdet and mmseg registries, with configs for RetinaNet, Faster R-CNN,
Mask R-CNN, SSDLite, Semantic FPN, DeepLabV3+ and LR-ASPP, and tools to train, test, export and benchmark.

Documentation: the `docs/` folder of the source repository (an mkdocs site: `mkdocs serve`).
"""
# The commands: each tool's ``main`` lives in ``rexnet_cli`` (argparse before torch); ``tools/*.py`` are shims.
COMMANDS = ['train', 'test', 'export', 'benchmark', 'make_synthetic_data', 'convert_checkpoint', 'demo', 'suite',
            'rank_analysis', 'rank_study', 'check_setup']

setup(
    name='rexnet_backbones',
    version='0.1.0',
    description='ReXNet v1 and ReXNet-lite backbones for timm, mmdetection and mmsegmentation',
    long_description=LONG_DESCRIPTION,
    long_description_content_type='text/markdown',
    license='MIT',
    python_requires='>=3.10',
    packages=find_packages(include=['rexnet_backbones', 'rexnet_backbones.*', 'rexnet_cli']),
    entry_points={'console_scripts': [f"rexnet-{name.replace('_', '-')} = rexnet_cli.{name}:main" for name in COMMANDS]},
    # The configs, where OpenMMLab packages keep theirs (<package>/.mim/configs). In the checkout
    # rexnet_backbones/.mim/configs is a symlink to configs/: an editable install uses the checkout's
    # files, a wheel (or sdist) gets a copy. rexnet_backbones.config_file() finds them in both.
    package_data={'rexnet_backbones': [f'.mim/configs/{pattern}' for pattern in CONFIG_FILES]},
    cmdclass={'build_py': BuildPyWithConfigs},
    install_requires=CORE,
    extras_require={'mm': MM, 'dev': DEV, 'deploy': DEPLOY, 'all': MM + DEV + DEPLOY},
)
