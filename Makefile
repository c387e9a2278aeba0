# One-command set-up: `make run` (the main job) and `make test` (the test suite) create .venv and install
# everything they need. TORCH_SPEC is what gets installed first when the venv has no torch yet; the default
# takes the CPU wheel on our machines. Bring your own build with e.g. `make TORCH_SPEC="torch --index-url ..."`,
# or keep an existing venv's torch (it is never replaced).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.hf_atom-installed
OUTPUT_DIR ?= outputs/main_job
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup run test test-fast lint clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: setup
	$(BIN)/python recipes/main_job.py --output_dir $(OUTPUT_DIR)

test: setup
	$(BIN)/python -m pytest -q tests

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" tests

lint: setup
	$(BIN)/ruff check hf_atom recipes benchmarks tests
	$(BIN)/ruff format --check hf_atom recipes benchmarks tests

clean:
	rm -rf $(VENV) outputs build *.egg-info
