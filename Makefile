# Set-up and entry points. `make run` serves the app, `make test` runs the whole test suite.
# Both create .venv and install what they need first (idempotent: a second run installs nothing new).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test setup setup-dev browser bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, as the local CPU build: a bare torch requirement would pull a 5 GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,llamacpp,openai,ollama,test-llm]"
	touch $(STAMP)

setup: $(STAMP)

browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q chromium chromium-driver)

run: setup
	$(BIN)/python ui.py

test: setup browser
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/query.py

clean:
	rm -rf $(VENV) data
