"""An OpenAI-compatible server, the real ``llama_cpp.server``: answers and streams without ever showing the API
key; its errors (context overflow, wrong base URL, rejected key) are named; a server killed mid-stream is named,
or the extractive answer is shown instead."""

from __future__ import annotations

import pytest

from rag.core.errors import LLMAuthError, LLMConnectionError, LLMContextOverflow, LLMModelNotFound
from rag.core.types import Reading
from rag.llm import as_llm_error, build_llm
from tests.llm_helpers import (
    QUESTION,
    SECRET,
    assert_citations_valid,
    assert_no_secret,
    needs_gguf,
    needs_openai,
    openai_pipeline,
    settings,
    stream_answer,
)
from tests.llm_servers import eos_bias
# Fixtures: pytest finds them by name in this module.
from tests.llm_helpers import index_dir  # noqa: F401
from tests.llm_servers import fresh_server, llama_server  # noqa: F401


@pytest.mark.llm
@needs_gguf
@needs_openai
def test_openai_compatible_server_end_to_end(index_dir, embedder, llama_server, caplog):
    caplog.set_level("DEBUG")
    pipeline = openai_pipeline(index_dir, embedder, llama_server.url)
    assert_no_secret(repr(pipeline.settings), pipeline.settings.model_dump(), repr(pipeline.llm),
                     pipeline.llm.to_dict(), pipeline.llm.to_json())

    answer = pipeline.ask(QUESTION)
    assert_citations_valid(pipeline, answer)
    deltas, final = stream_answer(pipeline)
    assert len(deltas) >= 3
    assert_citations_valid(pipeline, final)
    assert_no_secret(answer.to_json(), final.to_json(), answer.notes, final.notes, caplog.text)


@pytest.mark.llm
@needs_gguf
@needs_openai
def test_openai_compatible_server_errors(index_dir, embedder, llama_server):
    cfg = settings(llm="openai", openai_base_url=llama_server.url, openai_api_key=SECRET, llm_max_tokens=16)
    from llama_index.core.llms import ChatMessage

    with pytest.raises(Exception) as info:  # the server's own 400 for a prompt over its 4096-token window
        build_llm(cfg).chat([ChatMessage(role="user", content="battery " * 5000)])
    error = as_llm_error(info.value, cfg)
    assert isinstance(error, LLMContextOverflow) and "maximum context length is 4096 tokens" in str(error)

    with pytest.raises(Exception) as info:  # a base URL without /v1: the server answers 404
        build_llm(cfg.model_copy(update={"openai_base_url": llama_server.url[:-3]})).chat(
            [ChatMessage(role="user", content="hi")]
        )
    assert isinstance(as_llm_error(info.value, cfg), LLMModelNotFound)
    assert "ends with /v1" in str(as_llm_error(info.value, cfg))

    wrong = "sk-wrong-key-123"
    pipeline = openai_pipeline(index_dir, embedder, llama_server.url, openai_api_key=wrong, llm_fallback="none")
    with pytest.raises(LLMAuthError, match="rejected the API key") as info:
        pipeline.ask(QUESTION)
    assert wrong not in str(info.value) and SECRET not in str(info.value)

    fallback = openai_pipeline(index_dir, embedder, llama_server.url, openai_api_key=wrong)
    answer = fallback.ask(QUESTION)
    assert_citations_valid(fallback, answer)
    assert any("rejected the API key" in n for n in answer.notes)
    assert wrong not in answer.to_json()


@pytest.mark.llm
@needs_gguf
@pytest.mark.parametrize("fallback", ["none", "extractive"])
@needs_openai
def test_server_killed_mid_stream(index_dir, embedder, fresh_server, fallback, caplog):
    caplog.set_level("DEBUG")
    server = fresh_server()
    pipeline = openai_pipeline(index_dir, embedder, server.url, llm_fallback=fallback, llm_max_tokens=1024)
    eos_bias(pipeline)
    stream = pipeline.ask_stream(QUESTION)
    assert isinstance(next(stream), Reading)  # the passages, before the model is called
    first = next(stream)  # the first piece of the answer phrase: the server is streaming
    assert isinstance(first, str) and first
    server.kill()
    if fallback == "none":
        with pytest.raises(LLMConnectionError) as info:
            for _ in stream:
                pass
        message = str(info.value)
        assert f"127.0.0.1:{server.port}" in message and "broke before the answer was complete" in message
        assert_no_secret(message, caplog.text)
    else:
        *rest, final = list(stream)
        assert all(isinstance(d, str) for d in rest)
        assert_citations_valid(pipeline, final)
        assert final.mode == "extractive"
        note = next(n for n in final.notes if n.startswith("LLM failed"))
        assert "broke before the answer was complete" in note
        assert_no_secret(final.to_json(), caplog.text)
