# The two commands a new user needs: `make demo` and `make test`.
# Both create the virtual environment on first use; nothing downloads at run time after that.
# Another Python: `make test PYTHON=/path/to/python3.13` (its own .venv-python3.13); supported: 3.11 to 3.13.
PYTHON ?= python3.11
VENV ?= $(if $(filter python3.11,$(PYTHON)),.venv,.venv-$(notdir $(PYTHON)))
PYTEST_ARGS ?=
# Test files spread over this many processes (each with its own emulators and Prefect harness).
TEST_WORKERS ?= 2
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test up down lint typecheck bench clean

$(STAMP): pyproject.toml localdev/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --quiet --upgrade pip
	$(BIN)/pip install --quiet --quiet -e ".[dev]" -e ./localdev  # the product, and the local platform (dev only); errors only
# Byte-compile the project's own modules as pip does an installed package's: where the environment
# sets PYTHONDONTWRITEBYTECODE, every command would otherwise compile them again (~0.1 s each run).
	$(BIN)/python -m compileall -q -x '/sample/' flows tasks blocks backstop backstop_cli deployments localdev > /dev/null
	$(BIN)/backstop setup
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/backstop demo

test: $(STAMP)
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

up: $(STAMP)
	$(BIN)/backstop up

down: $(STAMP)
	$(BIN)/backstop down

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy flows tasks blocks backstop backstop_cli

bench: $(STAMP)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.bench_scale --write

clean:
	rm -rf $(VENV) .backstop
