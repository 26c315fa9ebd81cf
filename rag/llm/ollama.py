"""The ``ollama`` backend: an Ollama server (``RAG_OLLAMA_HOST``, ``RAG_OLLAMA_MODEL``).

Imported only when this backend is built: its extra (``llama-index-llms-ollama``) is imported at the top.
"""

from __future__ import annotations

from typing import ClassVar

from llama_index.llms.ollama import Ollama

from rag.core.errors import LLMConfigError
from rag.core.settings import Settings
from rag.llm.deadline import StreamDeadline
from rag.llm.errors import first_line


class OllamaWithDeadline(StreamDeadline, Ollama):
    """Ollama whose streams are abandoned after ``request_timeout`` seconds in all."""

    server: ClassVar[str] = "Ollama"

    @classmethod
    def class_name(cls) -> str:
        return "OllamaWithDeadline"

    def stream_timeout(self) -> float:
        """The client's ``request_timeout`` (RAG_LLM_TIMEOUT)."""
        return self.request_timeout


def build(settings: Settings) -> OllamaWithDeadline:
    """The LLM served by the Ollama at ``settings.ollama_host``."""
    try:
        return OllamaWithDeadline(
            model=settings.ollama_model,
            base_url=settings.ollama_host.rstrip("/"),
            request_timeout=settings.llm_timeout,
            temperature=settings.llm_temperature,
            context_window=settings.llm_context_window,  # known: no /api/show round trip
            additional_kwargs={"num_predict": settings.llm_max_tokens},
        )
    except Exception as exc:
        raise LLMConfigError(f"cannot configure the ollama backend: {first_line(exc)}") from exc
