"""Building the LlamaIndex LLM that settings choose (``RAG_LLM``).

Backends:

* ``none``: no LLM; answers are extractive. ``auto`` (the default) resolves to ``llamacpp`` once the reader
  model is installed, else to ``none`` (``rag.core.settings``).
* ``llamacpp``: a GGUF model run in-process by llama.cpp (``rag.llm.llamacpp``).
* ``openai``: any OpenAI-compatible chat-completions server (``rag.llm.openai_like``).
* ``ollama``: an Ollama server (``rag.llm.ollama``).

Every call is bounded by ``RAG_LLM_TIMEOUT``: HTTP backends pass it to their client (connect and read
timeouts) and all backends abandon a stream that runs past it; in-process llama.cpp checks the deadline
after every generated token. The API key is never logged, shown in ``repr``, serialised with the LLM or
included in an error message.

A backend's module imports its optional extra at its top, so it is imported only once the extra is known to
be installed (and only when that backend is built).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from rag.core.errors import LLMConfigError
from rag.core.settings import Settings


@dataclass(frozen=True)
class Backend:
    """An LLM backend: the pip extra it needs, the modules that extra provides, and the module that builds it."""

    extra: str
    needs: tuple[str, ...]
    module: str


BACKENDS = {
    "llamacpp": Backend("llamacpp", ("llama_cpp", "llama_index.llms.llama_cpp"), "rag.llm.llamacpp"),
    "openai": Backend("openai", ("openai", "llama_index.llms.openai_like"), "rag.llm.openai_like"),
    "ollama": Backend("ollama", ("ollama", "llama_index.llms.ollama"), "rag.llm.ollama"),
}


def build_llm(settings: Settings):
    """The LlamaIndex LLM chosen by ``settings.llm`` (None for ``none``).

    Raises LLMConfigError when the backend's extra is not installed or its settings are unusable.
    """
    name = settings.llm
    if name == "none":
        return None
    if name not in BACKENDS:
        raise LLMConfigError(f"unknown LLM backend {name!r}: set RAG_LLM to none, llamacpp, openai or ollama")
    backend = BACKENDS[name]
    _require(name, backend)
    return importlib.import_module(backend.module).build(settings)


def _require(name: str, backend: Backend) -> None:
    """LLMConfigError naming the pip extra to install when one of the backend's modules cannot be imported."""
    for module in backend.needs:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing = getattr(exc, "name", None) or module
            raise LLMConfigError(
                f"RAG_LLM={name} needs the {backend.extra!r} extra ({missing} is not installed). "
                f'Install it with: pip install -e ".[{backend.extra}]"'
            ) from exc
