# Two entry points for a fresh machine (see README):
#   make run    set up .venv, then train + evaluate the quickstart experiment headless
#   make test   set up .venv, then run the whole test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# the CPU wheel; set TORCH="torch==2.13.0 --index-url ..." (or any build the range admits) for CUDA
TORCH ?= torch==2.13.0
DATA ?= $(abspath ../shared/data)
export HBT_DATA_DIR ?= $(DATA)

.PHONY: setup run test tui bench docs clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test]"
	touch $@

run: setup
	$(VENV)/bin/hbt-tui --run experiments/quickstart.json

tui: setup
	$(VENV)/bin/hbt-tui

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/eval_speed.py
	$(PY) benchmarks/half_precision.py
	$(PY) benchmarks/gradcache_memory.py
	$(PY) benchmarks/store_scale.py
	$(PY) benchmarks/tui_responsiveness.py

# the pages generated from the code (a test fails when they differ from it)
docs: setup
	$(PY) -c "from engine.contract.spec_reference import render; open('docs/spec.md', 'w').write(render())"

clean:
	rm -rf $(VENV) .hbt-cache .pytest_cache
