"""Turning the exceptions of LLM libraries (llama.cpp, openai/httpx, ollama) into the API's LLM errors.

Exceptions are recognised by their class names and messages along the ``__cause__``/``__context__`` chain, so
no backend library is imported here. Every message names where the LLM is and never shows the API key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, Optional
from urllib.parse import urlsplit, urlunsplit

from rag.core.errors import (
    LLMAuthError,
    LLMConnectionError,
    LLMContextOverflow,
    LLMError,
    LLMModelNotFound,
    LLMTimeout,
)
from rag.core.settings import Settings
from rag.llm.models import resolve_gguf

_TIMEOUT_TYPES = {
    "TimeoutError", "TimeoutException", "APITimeoutError", "Timeout", "ReadTimeout", "ConnectTimeout",
    "WriteTimeout", "PoolTimeout", "ReadTimeoutError", "ConnectTimeoutError",
}
_CONNECTION_TYPES = {
    "ConnectionError", "APIConnectionError", "TransportError", "NetworkError", "ConnectError", "ReadError",
    "WriteError", "CloseError", "RemoteProtocolError", "ProtocolError", "IncompleteRead", "ChunkedEncodingError",
    "NewConnectionError", "MaxRetryError", "ServerDisconnectedError", "ClientConnectionError",
}
_REFUSED = re.compile(r"refused|failed to connect|name or service not known|no route to host|nodename|"
                      r"connecterror|cannot connect|could not connect|network is unreachable", re.I)
_OVERFLOW = re.compile(
    r"exceeds? (?:the )?context window|context[ _]length|maximum context|context window of|too many tokens|"
    r"prompt is too long|input is too long", re.I
)
_NOT_FOUND = re.compile(r"model\b.*\bnot found|not found.*\bmodel|unknown model|no such model|does not exist", re.I)
_KEYLIKE = re.compile(r"\bsk-[A-Za-z0-9*._\-]{3,}")
_BEARER = re.compile(r"(Bearer\s+)\S+", re.I)


def as_llm_error(exc: BaseException, settings: Settings) -> LLMError:
    """An LLMError with a clear message for any exception raised by an LLM call (never showing the key)."""
    if isinstance(exc, LLMError):
        message = scrub(str(exc), settings)
        return exc if message == str(exc) else type(exc)(message)
    links = list(_chain(exc))
    refused = any(_is_refusal(link) for link in links)
    for link in links:
        error = _classify(link, settings, refused)
        if error is not None:
            return error
    return LLMError(f"{_where(settings)} failed: {type(exc).__name__}: {scrub(first_line(exc), settings)}")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen and len(seen) < 8:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _is_refusal(exc: BaseException) -> bool:
    """A failure to connect at all (as opposed to a connection that broke)."""
    names = {c.__name__ for c in type(exc).__mro__}
    if names & {"ConnectError", "ConnectionRefusedError", "NewConnectionError"}:
        return True
    return bool(names & _CONNECTION_TYPES) and bool(_REFUSED.search(str(exc)))


def _classify(exc: BaseException, settings: Settings, refused: bool = False) -> Optional[LLMError]:
    names = {c.__name__ for c in type(exc).__mro__}
    where = _where(settings)
    text = scrub(first_line(exc), settings)
    if names & _TIMEOUT_TYPES:
        return LLMTimeout(
            f"{where} did not answer within {settings.llm_timeout:g} s (RAG_LLM_TIMEOUT). Try again, raise the "
            "timeout, or use a smaller model."
        )
    status = _status(exc)
    if status in (401, 403):
        if settings.llm == "openai":
            return LLMAuthError(
                f"{where} rejected the API key (HTTP {status}). Set a valid key in OPENAI_API_KEY or "
                "RAG_OPENAI_API_KEY."
            )
        return LLMAuthError(f"{where} refused the request (HTTP {status}): it needs credentials this app lacks.")
    if status == 404 or (settings.llm == "ollama" and "ResponseError" in names and _NOT_FOUND.search(text)):
        return _model_not_found(settings, status)
    if _OVERFLOW.search(text) and ("ValueError" in names or status in (400, 413, 422, 500, None, -1)):
        return LLMContextOverflow(
            f"the prompt is longer than the context window of {where} ({text}). Lower RAG_TOP_K or "
            "RAG_CHUNK_TOKENS, or set RAG_LLM_CONTEXT_WINDOW to the model's real window."
        )
    if status == 429:
        return LLMError(f"{where} is rate-limiting requests (HTTP 429); try again later.")
    if isinstance(status, int) and status >= 400:
        return LLMError(f"{where} answered HTTP {status}: {text[:300]}")
    if "ResponseError" in names:  # ollama, an error inside a stream
        return LLMError(f"{where} reported an error: {text[:300]}")
    if names & _CONNECTION_TYPES:
        if refused:
            return LLMConnectionError(f"cannot reach {where}: {_connect_hint(settings)}")
        return LLMConnectionError(
            f"the connection to {where} broke before the answer was complete ({text or type(exc).__name__}). "
            "Check that the server is still running."
        )
    return None


def _status(exc: BaseException) -> Optional[int]:
    status = getattr(exc, "status_code", None)
    if status is None:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
    return status if isinstance(status, int) and status > 0 else None


def _model_not_found(settings: Settings, status: Optional[int]) -> LLMModelNotFound:
    where = _where(settings)
    if settings.llm == "ollama":
        return LLMModelNotFound(
            f"{where} has no model {settings.ollama_model!r}. Pull it with `ollama pull {settings.ollama_model}` "
            "or set RAG_OLLAMA_MODEL to an installed model."
        )
    if settings.llm == "openai":
        return LLMModelNotFound(
            f"{where} does not know the model {settings.openai_model!r} (HTTP {status or 404}). Set "
            "RAG_OPENAI_MODEL to a model the server serves; if it is right, check that RAG_OPENAI_BASE_URL "
            "ends with /v1."
        )
    return LLMModelNotFound(f"{where} could not find its model (HTTP {status or 404}).")


def _connect_hint(settings: Settings) -> str:
    if settings.llm == "ollama":
        return "nothing answers there. Start Ollama (`ollama serve`) or set RAG_OLLAMA_HOST."
    if settings.llm == "openai":
        return "nothing answers there. Start the server or set RAG_OPENAI_BASE_URL."
    return "the connection was refused."


def _where(settings: Settings) -> str:
    if settings.llm == "openai":
        return f"the OpenAI-compatible server at {_safe_url(settings.openai_base_url)}"
    if settings.llm == "ollama":
        return f"Ollama at {_safe_url(settings.ollama_host)}"
    if settings.llm == "llamacpp":
        path = resolve_gguf(settings)
        return f"the llama.cpp model {Path(path).name}" if path else "the llama.cpp model"
    return "the LLM"


def _safe_url(url: str) -> str:
    """``url`` without user name, password, query string or fragment (any of which may carry a key)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts._replace(query="", fragment=""))


def scrub(text: str, settings: Settings) -> str:
    """``text`` with the API key (and anything that looks like a key or bearer token) removed."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
    if key:
        text = text.replace(key, "[redacted]")
    text = _BEARER.sub(r"\1[redacted]", text)
    return _KEYLIKE.sub("[redacted]", text)


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message; for an openai error, of the message in the server's reply."""
    body = getattr(exc, "body", None)  # openai: the parsed error object of the response
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        text = body["message"].strip()
    else:
        text = str(exc).strip()
    return text.splitlines()[0] if text else ""
