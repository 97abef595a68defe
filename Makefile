# The two set-up commands (README): `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install browser adb demo test test-all clean

install: $(VENV)/.installed

# torch is installed first, pinned, so the package's own range (<2.14) then installs nothing more.
# PyTorch's CPU wheel index is tried first: the CPU-only build is ~190 MB, where PyPI's Linux
# x86_64 torch 2.13.0 is the CUDA build that pulls several GB of nvidia-* wheels. Where that index
# cannot be reached (offline mirrors, locked-down networks) the pinned wheel from the configured
# index is taken instead. One short timeout and no retries, so an unreachable index costs seconds.
TORCH := torch==2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --timeout 20 --retries 0 \
	    --index-url $(TORCH_CPU_INDEX) $(TORCH) 2>/dev/null || \
	  { echo "PyTorch's CPU wheel index unreachable: installing $(TORCH) from the configured index"; \
	    $(BIN)/python -m pip install --quiet $(TORCH); }
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
