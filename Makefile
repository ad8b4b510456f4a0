# erphub — every target creates .venv and installs the pinned dependencies itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help demo test reliability bench check lint types fmt clean requirements

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP) ## run the Rossum -> ERP export on the local stack and simulators, twice
	$(BIN)/erphub demo

test: $(STAMP) ## run the whole test suite
	$(BIN)/python -m pytest -q

reliability: $(STAMP) ## crash, fault and bad-input scenarios R1-R12: duplicates=0, lost=0
	$(BIN)/python -m pytest -q tests/reliability

bench: $(STAMP) ## benchmarks and the cost model -> bench/results.json (several minutes)
	$(BIN)/python -m bench.run

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP) ## mypy strict on the packages
	$(BIN)/mypy

check: lint types test ## lint + types + tests (run before every commit)

fmt: $(STAMP) ## format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

requirements: ## re-pin requirements*.txt from requirements*.in (needs uv)
	UV_PYTHON_DOWNLOADS=never uv pip compile -q requirements-dev.in --python-version 3.11 --generate-hashes --no-header -o requirements-dev.txt
	UV_PYTHON_DOWNLOADS=never uv pip compile -q requirements.in --python-version 3.13 --python-platform aarch64-manylinux_2_28 --no-header -o layers/erphub/requirements.txt

clean: ## remove the virtualenv and build output
	rm -rf $(VENV) .aws-sam build .pytest_cache .mypy_cache .ruff_cache .erphub
