# Two commands on a fresh machine:
#   make demo   # creates .venv, trains the default config on the bundled digits, samples a grid
#   make test   # creates .venv, runs the test suite (the slow tests: make test-slow)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
DEMO_CONFIG ?= configs/vp/digits_ddpmpp_continuous.py
DEMO_WORKDIR ?= runs/demo
# pytest-xdist workers: compilation is single-threaded, so one per core (2 on the CI machine).
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(min(4, max(1, os.cpu_count() or 1)))")

.PHONY: venv demo test test-slow bench check-inception clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

demo: venv
	$(PY) main.py --config $(DEMO_CONFIG) --workdir $(DEMO_WORKDIR) --mode train
	$(PY) main.py --config $(DEMO_CONFIG) --workdir $(DEMO_WORKDIR) --mode sample
	@echo
	@echo "Checkpoints:  $(DEMO_WORKDIR)/checkpoints"
	@echo "TensorBoard:  $(VENV)/bin/tensorboard --logdir $(DEMO_WORKDIR)/tensorboard (pip install tensorboard)"
	@echo "Samples:      $$(ls $(DEMO_WORKDIR)/samples/*.png | tr '\n' ' ')"

test: venv
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal -m "not slow" tests

test-slow: venv
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal -m slow tests

bench: venv
	$(PY) benchmarks/train_step.py --config $(DEMO_CONFIG) --out benchmarks/results/train_step_digits.json

# The Flax FID Inception and tools/convert_inception_weights.py against pytorch-fid's
# FIDInceptionV3 on random weights (docs/evaluation.md). Its own side venv: torch is no
# dependency of this project. Not part of `make test`.
FIDCHECK_VENV := .venv-fidcheck
FIDCHECK_DIR ?= runs/fidcheck

$(FIDCHECK_VENV)/.installed:
	test -x $(FIDCHECK_VENV)/bin/python || $(PYTHON) -m venv $(FIDCHECK_VENV)
	$(FIDCHECK_VENV)/bin/pip install --quiet torch==2.13.0 torchvision==0.28.0 numpy pillow scipy
	$(FIDCHECK_VENV)/bin/pip install --quiet --no-deps pytorch-fid==0.3.0
	touch $@

check-inception: venv $(FIDCHECK_VENV)/.installed
	$(PY) tools/verify_inception.py prepare --dir $(FIDCHECK_DIR)
	$(FIDCHECK_VENV)/bin/python tools/verify_inception.py torch --dir $(FIDCHECK_DIR)
	$(PY) tools/verify_inception.py compare --dir $(FIDCHECK_DIR) --out $(FIDCHECK_DIR)/result.json

clean:
	rm -rf $(VENV) $(FIDCHECK_VENV) runs
