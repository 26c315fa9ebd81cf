"""Question answering over news articles with exact, verified citations.

    from rag import ask
    answer = ask("Who holds the majority stake in the joint venture?")
    answer.text, answer.citations, answer.passages, answer.abstained, answer.timings
"""

from rag.errors import InvalidQuestion, LLMError, RagError
from rag.pipeline import Pipeline, ask, ask_many, ask_stream, chat, default_pipeline, set_default_pipeline
from rag.settings import Settings, get_settings
from rag.types import Answer, Citation, Passage, SentenceCheck

__all__ = [
    "Answer", "Citation", "Passage", "SentenceCheck", "Pipeline", "Settings", "get_settings", "ask", "ask_many",
    "ask_stream", "chat", "default_pipeline", "set_default_pipeline", "InvalidQuestion", "LLMError", "RagError",
]
