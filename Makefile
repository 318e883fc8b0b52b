# swapd developer entry points. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: install llama-server lint typecheck test test-fast demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $@

llama-server:
	@scripts/ensure_llama_server.sh

lint: install
	$(BIN)/ruff check swapd tests bench scripts
	$(BIN)/ruff format --check swapd tests bench scripts

typecheck: install
	$(BIN)/mypy

# The whole suite, real llama-server end-to-end tests included (built once, then cached), and
# the UI's browser test in Debian's chromium (installed with apt-get when missing).
test: install lint typecheck
	@scripts/ensure_chromium.sh
	LLAMA_SERVER_BIN="$$(scripts/ensure_llama_server.sh)" SWAPD_REQUIRE_REAL=1 \
		$(PY) -m pytest -q

# Everything except the tests that need a real llama-server.
test-fast: install
	$(PY) -m pytest -q -m "not real_llama"

demo: install
	@scripts/demo.sh

bench: install
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	mkdir -p bench/results
	LLAMA_SERVER_BIN="$$(scripts/ensure_llama_server.sh)" $(PY) bench/proxy_overhead.py
	LLAMA_SERVER_BIN="$$(scripts/ensure_llama_server.sh)" $(PY) bench/swap_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
