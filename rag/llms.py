"""Building a LlamaIndex LLM from settings, and turning backend failures into the API's exception types."""

from __future__ import annotations

from rag.errors import LLMConfigError, LLMConnectionError, LLMError, LLMTimeout
from rag.settings import Settings


def build_llm(settings: Settings):
    """The LlamaIndex LLM chosen by ``settings.llm`` (None for ``none``)."""
    if settings.llm == "none":
        return None
    raise LLMConfigError(f"LLM backend {settings.llm!r} is not available yet")


def as_llm_error(exc: BaseException, settings: Settings) -> LLMError:
    """An LLMError with a clear message for any exception raised by an LLM call."""
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, TimeoutError):
        return LLMTimeout(f"the LLM did not answer within {settings.llm_timeout:.0f} s")
    if isinstance(exc, ConnectionError):
        return LLMConnectionError(f"cannot reach the LLM: {exc}")
    return LLMError(f"{type(exc).__name__}: {exc}")
