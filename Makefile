# The two set-up commands (README): `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install demo test test-all clean

install: $(VENV)/.installed

# torch is pinned first so pip takes the CPU wheel (an unpinned torch pulls a multi-GB CUDA
# build); the package's own range (<2.14) then installs nothing more.
$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(BIN)/python examples/digits/demo.py

test: install
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-all: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf out .pytest_cache .hypothesis
