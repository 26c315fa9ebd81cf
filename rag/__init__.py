"""Question answering over news articles with exact, verified citations.

    from rag import ask
    answer = ask("Who holds the majority stake in the joint venture?")
    answer.text, answer.citations, answer.passages, answer.abstained, answer.timings
"""

from rag.core.errors import InvalidQuestion, LLMError, RagError
from rag.core.settings import Settings, get_settings
from rag.core.types import Answer, Citation, Passage, Reading

_PIPELINE_NAMES = ("Pipeline", "Services", "open_services", "ask", "ask_many", "ask_stream", "chat", "default_pipeline",
                   "set_default_services")

__all__ = [
    "Answer", "Citation", "Passage", "Reading", "Settings", "get_settings", "InvalidQuestion",
    "LLMError", "RagError", *_PIPELINE_NAMES,
]


def __getattr__(name: str):
    # The composition module imports LlamaIndex, Chroma and torch (about 2 s): loaded on first use only, so that
    # ``python -m rag eval --compare`` and code that only needs the dataclasses start at once.
    if name in _PIPELINE_NAMES:
        from rag import app

        return getattr(app, name)
    raise AttributeError(f"module 'rag' has no attribute {name!r}")
