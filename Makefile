# The two set-up commands (README): `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install browser adb demo test test-all clean

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

# The HTML report's test renders the page in headless Chromium (Debian's package): installed here
# when missing, as root or with passwordless sudo. Without apt-get the test skips, saying why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	if command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  echo "installing chromium (apt-get) for the HTML report test"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	else echo "note: no chromium and no apt-get: the HTML rendering test will be skipped"; fi

# The adb tests (deploy to adb://SERIAL up to where a phone is needed) run the real adb client,
# Debian's `adb` package: installed here when missing, like chromium above.
adb:
	@command -v adb >/dev/null 2>&1 || \
	if command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  echo "installing adb (apt-get) for the adb deploy tests"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq adb >/dev/null; \
	else echo "note: no adb and no apt-get: the real-adb test will be skipped"; fi

test: install browser adb
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-all: install browser adb
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf out .pytest_cache .hypothesis
