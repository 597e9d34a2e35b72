# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Debian packages the tests use: promtool, systemd-analyze, ffmpeg (reference encoder).
TEST_DEBS := prometheus systemd

.PHONY: run test lint typecheck pytest bench-idle bench-upload clean

$(BIN)/edged: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: $(BIN)/edged
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/edged
	$(BIN)/edged run

test: $(VENV)/.test-installed
	scripts/install-debs $(TEST_DEBS)
	$(MAKE) lint typecheck pytest

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/python -m pytest

bench-idle: $(BIN)/edged
	$(BIN)/python bench/idle.py

bench-upload: $(VENV)/.test-installed
	$(BIN)/python bench/upload.py

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache
