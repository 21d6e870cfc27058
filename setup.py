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

# Exact pins shown to work together on Python 3.11 (see README, "Set-up").
TORCH = ['torch==2.14.1', 'torchvision==0.29.1']
CORE = TORCH + ['timm>=1.0.20,<1.1', 'numpy>=1.26,<3', 'safetensors']
# mmcv 2.1.0 is an sdist that needs --no-build-isolation and a C++20 patch: tools/install_mmcv.sh.
MM = [
    'mmengine==0.10.7',
    'mmcv==2.1.0',
    'mmdet==3.3.0',
    'mmsegmentation==1.2.2',
    'pycocotools',
    # undeclared runtime imports of mmseg.models
    'ftfy',
    'regex',
    # mmengine 0.10.7 imports pkg_resources (removed in setuptools 82); torch 2.14 needs >= 77.0.3
    'setuptools>=77.0.3,<82',
]
DEV = ['pytest>=8', 'matplotlib', 'psutil']
# ONNX export / ONNX Runtime / OpenVINO (rexnet_backbones.deploy, tools/export.py); lower bounds = the
# versions tested with torch 2.14.1 (onnxscript: torch's dynamo-based exporter, `--dynamo`).
DEPLOY = ['onnx>=1.23', 'onnxruntime>=1.32', 'openvino>=2026.4', 'onnxscript>=0.7']

setup(
    name='rexnet_backbones',
    version='0.1.0',
    description='ReXNet v1 and ReXNet-lite backbones for timm, mmdetection and mmsegmentation',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='MIT',
    python_requires='>=3.10',
    packages=find_packages(include=['rexnet_backbones', 'rexnet_backbones.*']),
    # The configs, where OpenMMLab packages keep theirs (<package>/.mim/configs). In the checkout
    # rexnet_backbones/.mim/configs is a symlink to configs/: an editable install uses the checkout's
    # files, a wheel (or sdist) gets a copy. rexnet_backbones.config_file() finds them in both.
    package_data={'rexnet_backbones': [f'.mim/configs/{pattern}' for pattern in CONFIG_FILES]},
    cmdclass={'build_py': BuildPyWithConfigs},
    install_requires=CORE,
    extras_require={'mm': MM, 'dev': DEV, 'deploy': DEPLOY, 'all': MM + DEV + DEPLOY},
)
