# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rexnet-installed
PYTEST_ARGS ?=
# the exact tested versions (setup.py declares ranges); passed to every pip install of `make setup`
CONSTRAINTS := requirements/constraints.txt
PIP_C := $(PY) -m pip install -c $(CONSTRAINTS)

.PHONY: setup demo test test-fast docs wheel-check clean-venv test-torch213 gpu-check

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

# On a machine with a GPU: mmcv's CUDA ops against CPU, a training step of RetinaNet and Faster R-CNN with
# --amp, SyncBN and torchrun, then tools/test.py; a pass/fail table. Without a GPU it says so and exits 0.
gpu-check: $(STAMP)
	$(PY) tools/gpu_check.py
