"""The ``openai`` backend: any OpenAI-compatible chat-completions server (OpenAI, vLLM, ``python -m llama_cpp.server``).

Settings: ``RAG_OPENAI_BASE_URL``, ``RAG_OPENAI_MODEL`` and ``OPENAI_API_KEY`` (or ``RAG_OPENAI_API_KEY``).
Imported only when this backend is built: its extra (``llama-index-llms-openai-like``) is imported at the top.
"""

from __future__ import annotations

from typing import Optional
from urllib.parse import urlsplit

from llama_index.core.bridge.pydantic import Field
from llama_index.llms.openai_like import OpenAILike

from rag.core.errors import LLMConfigError
from rag.core.settings import Settings
from rag.llm.deadline import StreamDeadline
from rag.llm.errors import first_line, scrub

OPENAI_MAX_RETRIES = 1  # one retry on connection errors, timeouts, 429 and 5xx; keeps failures quick
NO_KEY = "no-key"  # local servers usually ignore the key, but the client insists on one


class OpenAICompatible(StreamDeadline, OpenAILike):
    """OpenAILike whose API key stays out of ``repr``, ``to_dict`` and instrumentation events,
    and whose streams are abandoned after ``timeout`` seconds in all."""

    api_key: Optional[str] = Field(default=None, repr=False, exclude=True, description="Never shown.")

    @classmethod
    def class_name(cls) -> str:
        return "OpenAICompatible"

    def stream_timeout(self) -> float:
        """The client's ``timeout`` (RAG_LLM_TIMEOUT)."""
        return self.timeout


def build(settings: Settings) -> OpenAICompatible:
    """The LLM served at ``settings.openai_base_url``; LLMConfigError when the OpenAI API would get no key."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
    base_url = settings.openai_base_url.rstrip("/")
    if not key:
        if urlsplit(base_url).hostname == "api.openai.com":
            raise LLMConfigError(
                "RAG_LLM=openai with the OpenAI API needs an API key: set OPENAI_API_KEY (or RAG_OPENAI_API_KEY), "
                "or point RAG_OPENAI_BASE_URL at a local OpenAI-compatible server"
            )
        key = NO_KEY
    try:
        return OpenAICompatible(
            model=settings.openai_model,
            api_base=base_url,
            api_key=key,
            is_chat_model=True,
            is_function_calling_model=False,
            timeout=settings.llm_timeout,
            max_retries=OPENAI_MAX_RETRIES,
            context_window=settings.llm_context_window,
            max_tokens=settings.llm_max_tokens,
            temperature=settings.llm_temperature,
        )
    except Exception as exc:
        raise LLMConfigError(f"cannot configure the openai backend: {scrub(first_line(exc), settings)}") from exc
