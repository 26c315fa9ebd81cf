"""Question answering over news articles with exact, verified citations.

    from rag import ask
    answer = ask("Who holds the majority stake in the joint venture?")
    answer.text, answer.citations, answer.passages, answer.abstained, answer.timings
"""

from rag.errors import InvalidQuestion, LLMError, RagError
from rag.settings import Settings, get_settings
from rag.types import Answer, Citation, Passage, Reading

_PIPELINE_NAMES = ("Pipeline", "ask", "ask_many", "ask_stream", "chat", "default_pipeline", "set_default_pipeline")

__all__ = [
    "Answer", "Citation", "Passage", "Reading", "Settings", "get_settings", "InvalidQuestion",
    "LLMError", "RagError", *_PIPELINE_NAMES,
]


def __getattr__(name: str):
    # The pipeline module imports LlamaIndex, Chroma and torch (about 2 s): loaded on first use only, so that
    # ``python -m rag eval --compare`` and code that only needs the dataclasses start at once.
    if name in _PIPELINE_NAMES:
        from rag import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'rag' has no attribute {name!r}")
