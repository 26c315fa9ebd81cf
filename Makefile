# Set-up and entry points: `make run` serves the app, `make test` runs the whole test suite.
# Both create .venv and install what they need first; a second run installs nothing new.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HASH := $(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: run test setup setup-test browser bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, as the local CPU build: a bare torch requirement would pull a 5 GB CUDA build.
$(VENV)/.app-$(HASH): | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	touch $@

# Everything the tests use: the dev tools and every LLM backend (llama-cpp-python compiles once, ~10 min;
# pip caches the wheel).
$(VENV)/.test-$(HASH): $(VENV)/.app-$(HASH)
	$(BIN)/pip install -q -e ".[dev,llamacpp,openai,ollama,test-llm]"
	touch $@

setup: $(VENV)/.app-$(HASH)

setup-test: $(VENV)/.test-$(HASH) browser

# Debian's headless Chromium for the browser tests (Playwright cannot download browsers here).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q chromium chromium-driver)

run: setup
	$(BIN)/python ui.py

test: setup-test
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/query.py

clean:
	rm -rf $(VENV) data
