# `make test` and `make quickstart` set up .venv on first use (pinned by constraints.txt).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1

.PHONY: install test test-all quickstart bench lint clean

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

clean:
	rm -rf $(VENV) build *.egg-info
