# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rexnet-installed
PYTEST_ARGS ?=
# the exact tested versions (setup.py declares ranges); passed to every pip install of `make setup`
CONSTRAINTS := requirements/constraints.txt
PIP_C := $(PY) -m pip install -c $(CONSTRAINTS)

.PHONY: setup demo test test-fast docs wheel-check clean-venv test-torch213 gpu-check gpu-bundle

setup: $(STAMP)

$(STAMP): setup.py tools/install_mmcv.sh Makefile $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_C) -U pip wheel setuptools
	# torch first, then mmengine: mmcv's setup.py imports both (versions from $(CONSTRAINTS)).
	$(PIP_C) torch torchvision mmengine ninja psutil
	# mmcv: an installed one whose ops fit, a prebuilt wheel, or a build (CUDA ops where torch has CUDA and nvcc)
	bash tools/install_mmcv.sh $(PY)
	$(PIP_C) -e '.[all]'
	# the set-up check: mmcv's version and ops (CUDA kernels when a GPU is visible), mmdet and mmseg import
	$(PY) tools/check_setup.py
	@touch $@

demo: $(STAMP)
	$(PY) tools/demo.py

test: $(STAMP)
	$(PY) -m pytest tests $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow" $(PYTEST_ARGS)

# the documentation site (mkdocs.yml, docs/) into work_dirs/site; `make test` builds it too (tests/test_docs_site.py)
docs: $(STAMP)
	$(PY) -m mkdocs build --strict -d work_dirs/site

# the wheel (not editable) from outside the checkout: configs, model, demo training, tools/test.py
wheel-check: $(STAMP)
	bash tools/check_wheel_install.sh $(VENV)

clean-venv:
	rm -rf $(VENV)

# A second torch: torch 2.13.0 and its torchvision in $(VENV213), the project installed with `pip install -e .`
# (which must keep that torch), then the timm-side tests (models, conversion, features, fusing, export);
# tests that need mmcv/mmdet/mmseg skip. Other versions of the set come from $(CONSTRAINTS).
# TORCH213_PIP_ARGS: where torch/torchvision come from; the default is PyTorch's CPU index.
VENV213 ?= .venv-torch213
TORCH213 ?= torch==2.13.0 torchvision==0.28.0
TORCH213_PIP_ARGS ?= --extra-index-url https://download.pytorch.org/whl/cpu
TORCH213_TESTS ?= tests/test_models.py tests/test_convert.py tests/test_timm_contract.py tests/test_fuse.py \
	tests/test_deploy_onnx.py tests/test_checkpoint.py tests/test_hub.py tests/test_rank.py
PY213 := $(VENV213)/bin/python

test-torch213:
	@test -x $(PY213) || $(PYTHON) -m venv $(VENV213)
	grep -v -E '^(torch|torchvision|triton|nvidia-|cuda-)' $(CONSTRAINTS) > $(VENV213)/constraints.txt
	$(PY213) -m pip install -c $(VENV213)/constraints.txt -U pip wheel setuptools
	$(PY213) -m pip install $(TORCH213_PIP_ARGS) $(TORCH213)
	$(PY213) -c "import torch; print(torch.__version__)" > $(VENV213)/torch-before.txt
	$(PY213) -m pip install -c $(VENV213)/constraints.txt -e '.[dev,deploy]'
	$(PY213) -c "import sys, torch; before = open(sys.argv[1]).read().strip(); \
		assert torch.__version__ == before, f'pip install -e . replaced torch {before} by {torch.__version__}'; \
		print(f'pip install -e . kept torch {before}')" $(VENV213)/torch-before.txt
	$(PY213) -m pytest $(TORCH213_TESTS) $(PYTEST_ARGS)

# On a machine with a GPU: mmcv's CUDA ops against CPU, an --amp + sync_bn + torchrun training step of RetinaNet,
# Faster R-CNN, Mask R-CNN and Semantic FPN, then tools/test.py; a pass/fail table, a JSON summary and the logs in
# GPU_CHECK_OUT. Without a GPU it says so and exits 0; GPU_CHECK_ARGS=--cpu runs the same steps on the CPU.
GPU_CHECK_ARGS ?=
GPU_CHECK_OUT ?= work_dirs/gpu_check
gpu-check: $(STAMP)
	$(PY) tools/gpu_check.py --work-dir $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS)

# The bundle for a bare GPU machine (CUDA PyTorch, no OpenMMLab packages, no network): wheels and mmcv's sdist in
# GPU_BUNDLE (git-ignored, <= 64 MiB), made here with pip (PyPI must be reachable). There:
#   python3 tools/gpu_check.py --bundle gpu_bundle --out-dir OUT    (or bash tools/gpu_device_call.sh gpu_bundle OUT)
GPU_BUNDLE ?= gpu_bundle
gpu-bundle: $(STAMP)
	$(PY) tools/make_gpu_bundle.py --out $(GPU_BUNDLE)
