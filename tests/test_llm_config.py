"""LLM configuration errors: an unknown backend, a missing or unloadable GGUF file, a backend whose extra is not
installed, an OpenAI key that is required and never shown; and the ``none`` backend."""

from __future__ import annotations

import re
import sys

import pytest
from pydantic import ValidationError

from rag.core.errors import LLMConfigError, LLMError
from rag.llm import as_llm_error, build_llm
from tests.llm_helpers import (
    QUESTION,
    SECRET,
    assert_no_secret,
    make_pipeline,
    needs_gguf,
    needs_llamacpp,
    needs_openai,
    settings,
)
# A fixture: pytest finds it by name in this module.
from tests.llm_helpers import index_dir  # noqa: F401


def test_unknown_backend_is_rejected(monkeypatch):
    with pytest.raises(ValidationError, match="llm"):
        settings(llm="gpt5")
    monkeypatch.setenv("RAG_LLM", "bogus")
    with pytest.raises(ValidationError):
        settings()


@needs_llamacpp
def test_missing_gguf_file(tmp_path):
    missing = tmp_path / "models" / "nope.gguf"
    with pytest.raises(LLMConfigError, match=re.escape(str(missing))):
        build_llm(settings(llm="llamacpp", llm_model_path=missing))


@needs_gguf
def test_unloadable_gguf_file(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF but not really" * 10)
    with pytest.raises(LLMConfigError, match=f"cannot load the GGUF model {re.escape(str(broken))}"):
        build_llm(settings(llm="llamacpp", llm_model_path=broken))


@pytest.mark.parametrize(
    "backend, module",
    [("llamacpp", "llama_index.llms.llama_cpp"), ("openai", "llama_index.llms.openai_like"),
     ("ollama", "llama_index.llms.ollama")],
)
def test_missing_extra_names_the_install_command(monkeypatch, backend, module):
    monkeypatch.setitem(sys.modules, module, None)  # as if the extra were not installed
    with pytest.raises(LLMConfigError) as info:
        build_llm(settings(llm=backend, openai_api_key=SECRET))
    assert f'pip install -e ".[{backend}]"' in str(info.value)
    assert SECRET not in str(info.value)


@needs_openai
def test_openai_api_needs_a_key_and_never_shows_it(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("RAG_OPENAI_API_KEY", raising=False)
    with pytest.raises(LLMConfigError, match="OPENAI_API_KEY"):
        build_llm(settings(llm="openai"))

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    cfg = settings(llm="openai")
    assert cfg.openai_api_key.get_secret_value() == SECRET
    llm = build_llm(cfg)
    assert llm.api_key == SECRET  # used for requests...
    assert_no_secret(repr(cfg), cfg.model_dump(), repr(llm), llm.to_dict(), llm.to_json())  # ...never shown
    leaked = as_llm_error(RuntimeError(f"upstream said: Bearer {SECRET} is bad, key {SECRET}"), cfg)
    assert isinstance(leaked, LLMError) and SECRET not in str(leaked) and "[redacted]" in str(leaked)


def test_none_backend_builds_nothing(index_dir, embedder):
    assert build_llm(settings(llm="none")) is None
    pipeline = make_pipeline(index_dir, embedder, llm="none")
    with pytest.raises(LLMError, match="RAG_LLM"):
        pipeline.ask(QUESTION)
    assert pipeline.ask(QUESTION, mode="extractive").citations
