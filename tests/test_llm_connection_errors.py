"""An LLM server that cannot be reached, has no such model, or never answers: each is named (with the setting
to check), or the extractive answer is shown with a note saying why."""

from __future__ import annotations

import socket
import threading

import pytest

from rag.core.errors import LLMConnectionError, LLMModelNotFound, LLMTimeout
from tests.conftest import free_port
from tests.llm_helpers import (
    QUESTION,
    assert_citations_valid,
    assert_no_secret,
    needs_ollama,
    needs_openai,
    ollama_pipeline,
    openai_pipeline,
    stream_answer,
)
# Fixtures: pytest finds them by name in this module.
from tests.llm_helpers import index_dir  # noqa: F401
from tests.llm_servers import fake_ollama  # noqa: F401


@needs_ollama
def test_ollama_unreachable(index_dir, embedder):
    port = free_port()  # nothing listens there
    pipeline = ollama_pipeline(index_dir, embedder, f"http://127.0.0.1:{port}", llm_fallback="none")
    for call in (lambda: pipeline.ask(QUESTION), lambda: list(pipeline.ask_stream(QUESTION))):
        with pytest.raises(LLMConnectionError) as info:
            call()
        assert f"127.0.0.1:{port}" in str(info.value) and "RAG_OLLAMA_HOST" in str(info.value)

    fallback = ollama_pipeline(index_dir, embedder, f"http://127.0.0.1:{port}")
    answer = fallback.ask(QUESTION)
    assert_citations_valid(fallback, answer)
    assert any(f"cannot reach Ollama at http://127.0.0.1:{port}" in n for n in answer.notes)


@needs_openai
def test_openai_unreachable(index_dir, embedder):
    port = free_port()  # nothing listens there
    pipeline = openai_pipeline(index_dir, embedder, f"http://127.0.0.1:{port}/v1", llm_fallback="none")
    for call in (lambda: pipeline.ask(QUESTION), lambda: list(pipeline.ask_stream(QUESTION))):
        with pytest.raises(LLMConnectionError, match="RAG_OPENAI_BASE_URL") as info:
            call()
        assert str(info.value).startswith(f"cannot reach the OpenAI-compatible server at http://127.0.0.1:{port}/v1")
        assert_no_secret(info.value)


@needs_ollama
def test_ollama_unknown_model(index_dir, embedder, fake_ollama):
    ollama = fake_ollama("missing")
    pipeline = ollama_pipeline(index_dir, embedder, ollama.host, llm_fallback="none")
    for call in (lambda: pipeline.ask(QUESTION), lambda: list(pipeline.ask_stream(QUESTION))):
        with pytest.raises(LLMModelNotFound, match=r"has no model 'tiny'.*ollama pull tiny"):
            call()


@needs_openai
@needs_ollama
def test_timeouts_on_a_server_that_never_answers(index_dir, embedder, fake_ollama):
    with socket.create_server(("127.0.0.1", 0)) as listener:  # accepts connections, never answers
        held = []
        threading.Thread(target=lambda: held.extend(iter(lambda: listener.accept()[0], None)), daemon=True).start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        pipeline = openai_pipeline(index_dir, embedder, url, llm_timeout=1, llm_fallback="none")
        for call in (lambda: pipeline.ask(QUESTION), lambda: list(pipeline.ask_stream(QUESTION))):
            with pytest.raises(LLMTimeout, match="did not answer within 1 s") as info:
                call()
            assert_no_secret(info.value)
        # with the fallback, the time spent waiting for the LLM is recorded: two tries of 1 s and a short pause
        fallback = openai_pipeline(index_dir, embedder, url, llm_timeout=1)
        for answer in (fallback.ask(QUESTION), stream_answer(fallback)[1]):
            assert_citations_valid(fallback, answer)
            assert any("did not answer within 1 s" in n for n in answer.notes)
            assert 1 <= answer.timings["generate"] < 6

    ollama = fake_ollama("hang")
    pipeline = ollama_pipeline(index_dir, embedder, ollama.host, llm_timeout=1, llm_fallback="none")
    for call in (lambda: pipeline.ask(QUESTION), lambda: list(pipeline.ask_stream(QUESTION))):
        with pytest.raises(LLMTimeout, match=r"Ollama at http://127\.0\.0\.1:\d+ did not answer within 1 s"):
            call()
    answer = ollama_pipeline(index_dir, embedder, ollama.host, llm_timeout=1).ask(QUESTION)
    assert any("did not answer within 1 s" in n for n in answer.notes) and answer.timings["generate"] < 4
