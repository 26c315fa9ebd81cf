# Set-up and entry points: `make run` serves the app, `make test` runs the whole test suite (what CI runs),
# `make test-fast` the quick tier for the edit-test loop.
# All create .venv and install what they need first, at the versions pinned in constraints.txt (the versions
# the tests passed with); a second run installs nothing new. `make lock` refreshes constraints.txt.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := constraints.txt
HASH := $(shell cat pyproject.toml $(CONSTRAINTS) | sha1sum | cut -c1-12)
PIP := $(BIN)/pip install -q -c $(CONSTRAINTS)
EXTRAS := dev,llamacpp,openai,ollama,test-llm

.PHONY: run test test-fast setup setup-test browser model bench lock clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, as the local CPU build: a bare torch requirement would pull a 5 GB CUDA build.
$(VENV)/.app-$(HASH): | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(PIP) -e ".[llamacpp]"
	touch $@

# Everything the tests use: the dev tools and every LLM backend (llama-cpp-python compiles once, ~10 min;
# pip caches the wheel).
$(VENV)/.test-$(HASH): $(VENV)/.app-$(HASH)
	$(PIP) -e ".[$(EXTRAS)]"
	touch $@

setup: $(VENV)/.app-$(HASH)

setup-test: $(VENV)/.test-$(HASH) browser model

# Debian's headless Chromium for the browser tests (Playwright cannot download browsers here).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q chromium chromium-driver)

# The default local LLM (about 1.1 GB, verified by size and SHA-256); installs nothing when already there.
model: setup
	$(BIN)/python -m rag models install

run: setup model
	$(BIN)/python ui.py

test: setup-test
	$(BIN)/python -m pytest

# The edit-test loop: real model, real Chroma, the repository's small test corpus; no browser, no LLM,
# no extra processes or large inputs, no evaluation corpora; the fuzz tests with a small budget.
test-fast: setup-test
	RAG_FUZZ_PROFILE=fast $(BIN)/python -m pytest -m "not slow and not browser and not llm and not heavy"

bench: setup-test
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/query.py
	$(BIN)/python bench/fuzz.py

# Re-resolve every dependency (all extras, Python 3.11+, any platform) to the newest versions allowed by
# pyproject.toml; then run `make test` and commit constraints.txt if it passes.
lock: | $(BIN)/python
	$(BIN)/pip install -q uv
	echo "torch==2.13.0" > $(VENV)/torch-override.txt
	$(BIN)/uv pip compile pyproject.toml --all-extras --universal --python-version 3.11 \
		--override $(VENV)/torch-override.txt --no-header -o $(CONSTRAINTS)

clean:
	rm -rf $(VENV) data
