# jitgate: `make run` to try it, `make test` to run the whole suite, `make check` before a commit.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps run test check lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

system-deps:
	bash scripts/system-deps.sh

run: install
	bash scripts/demo.sh

test: install system-deps
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy --strict src

check: lint typecheck test

bench: install system-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) jitgate.db jitgate.db-* .demo-tokens .demo-mail .demo-policy.yaml audit.jsonl evidence.json
