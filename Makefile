# Set-up and everyday commands. `make quickstart` and `make test` each install what they need
# into .venv first (once), so either works on a fresh machine with Python 3.11.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch by default. On a GPU machine: make install TORCH=torch
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1

.PHONY: install quickstart test test-fast check-quickstart clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install "$(TORCH)"
	$(BIN)/python -m pip install -e ".[test]"
	touch $@

quickstart: install
	$(BIN)/rlhf train recipes/quickstart.yaml

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

check-quickstart: install
	$(BIN)/python scripts/check_quickstart.py --seeds 0 1 2

clean:
	rm -rf $(VENV) runs .pytest_cache
