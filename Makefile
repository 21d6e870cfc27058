# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rexnet-installed
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast wheel-check clean-venv

setup: $(STAMP)

$(STAMP): setup.py tools/install_mmcv.sh Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -U pip wheel 'setuptools>=77.0.3,<82'
	# torch first (local wheels), then mmengine: mmcv's setup.py imports both.
	$(PY) -m pip install 'torch==2.14.1' 'torchvision==0.29.1' 'mmengine==0.10.7' ninja psutil
	bash tools/install_mmcv.sh $(PY)
	$(PY) -m pip install -e '.[all]'
	$(PY) -c "import mmcv.ops, mmdet.models, mmseg.models, rexnet_backbones; print('set-up ok')"
	@touch $@

demo: $(STAMP)
	$(PY) tools/demo.py

test: $(STAMP)
	$(PY) -m pytest tests $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow" $(PYTEST_ARGS)

# the wheel (not editable) from outside the checkout: configs, model, demo training, tools/test.py
wheel-check: $(STAMP)
	bash tools/check_wheel_install.sh $(VENV)

clean-venv:
	rm -rf $(VENV)
