# The two commands of the README: `make demo` and `make test`. Both create .venv and install when needed.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
DTL     := $(VENV)/bin/dtl
STAMP   := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install demo test test-fast bench clean-demo

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Build the SYNTHETIC demo corpus, train the baseline through the spine, test on held-out speakers.
demo: install
	$(DTL) data demo --root data/demo
	$(DTL) train experiment=baseline_demo run_id=demo
	@echo "run directory: outputs/baseline_demo/demo (checkpoints/, csv/, wandb/, meta/)"

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: install
	$(PY) benchmarks/bench_features.py
	$(PY) benchmarks/bench_demo_corpus.py

clean-demo:
	rm -rf data/demo outputs/baseline_demo/demo
