"""The composition root: builds the shared embedder, store, pipeline and ingestor for the UI, the CLI and
evaluation, and holds the one process-wide default pipeline behind ``rag.ask``.

This is the only module of ``rag`` that imports ``ingest``: the query side and ingestion are peers that
share the index layer and never import each other. Process-wide state (offline switches for the Hugging Face
libraries, third-party logger levels, the default pipeline) lives here and nowhere else.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Union

from ingest import IngestReport, Ingestor, open_ingestor
from ingest.loaders import SUPPORTED_SUFFIXES
from rag.core.settings import Settings, get_settings
from rag.core.types import Answer, Reading
from rag.index.embedder import Embedder
from rag.index.store import Store
from rag.query.pipeline import History, Pipeline

log = logging.getLogger(__name__)

ACCEPTED_SUFFIXES: tuple[str, ...] = SUPPORTED_SUFFIXES  # file types ingestion reads (for upload forms)
__all__ = ["ACCEPTED_SUFFIXES", "Services", "open_services", "open_store", "open_ingestor", "default_services",
           "default_pipeline", "set_default_services", "ask", "ask_many", "ask_stream", "chat"]


def _offline() -> None:
    """Never reach a model hub: models load from installed packages or local paths only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _quiet_libraries() -> None:
    """bm25s sets its own logger to DEBUG when imported, which would log every BM25 index build."""
    import bm25s  # noqa: F401

    logging.getLogger("bm25s").setLevel(logging.WARNING)


_offline()
_quiet_libraries()


@dataclass
class Services:
    """Everything one index needs, built once and shared: the pipeline answers, the ingestor writes."""

    settings: Settings
    embedder: Embedder
    store: Store
    pipeline: Pipeline
    _ingestor: Optional[Ingestor] = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def ingestor(self) -> Ingestor:
        """The Ingestor writing into this index (built on first use; shares the loaded embedder)."""
        if self._ingestor is None:
            with self._lock:
                if self._ingestor is None:
                    self._ingestor = Ingestor(self.store, self.settings)
        return self._ingestor

    def ensure_corpus(self, progress: bool = True) -> Optional[IngestReport]:
        """Ingest the default corpus when the index is empty; returns the IngestReport or None."""
        if self.store.article_count() == 0 and self.settings.corpus_dir.is_dir():
            log.info("empty index: ingesting the default corpus from %s", self.settings.corpus_dir)
            return self.ingestor.ingest([self.settings.corpus_dir], progress=progress)
        return None


def open_store(settings: Optional[Settings] = None, embedder: Optional[Embedder] = None) -> Store:
    """The index of ``settings`` (the embedder is read from its folder; the model loads on first use)."""
    settings = settings or get_settings()
    return Store(settings, embedder or Embedder(settings))


def open_services(settings: Optional[Settings] = None, *, llm=None, embedder: Optional[Embedder] = None) -> Services:
    """Open the index of ``settings`` with one embedder shared by answering and ingestion.

    ``llm``: a LlamaIndex LLM to use instead of the one the settings name (tests pass scripted ones).
    """
    settings = settings or get_settings()
    store = open_store(settings, embedder)
    pipeline = Pipeline(settings, store=store, llm=llm)
    return Services(settings, store.embedder, store, pipeline)


# --- the module-level API (a lazily built default pipeline, replaceable for tests) ---------------------
_default: Optional[Services] = None
_default_lock = threading.Lock()


def default_services() -> Services:
    """The process-wide services built from default settings (the default corpus ingested if empty)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                services = open_services()
                services.ensure_corpus(progress=False)
                _default = services
    return _default


def default_pipeline() -> Pipeline:
    """The process-wide Pipeline behind ``ask``/``ask_many``/``chat``."""
    return default_services().pipeline


def set_default_services(services: Optional[Services]) -> None:
    """Replace (or with None, forget) the services behind ``ask``/``ask_many``/``chat``."""
    global _default
    _default = services


def ask(question: str, **kwargs) -> Answer:
    """Answer a question with the default pipeline."""
    return default_pipeline().ask(question, **kwargs)


def ask_many(questions: Iterable[str], **kwargs) -> list[Answer]:
    """Answer many questions with the default pipeline."""
    return default_pipeline().ask_many(questions, **kwargs)


def ask_stream(question: str, **kwargs) -> Iterator[Union[Reading, str, Answer]]:
    """Stream an answer with the default pipeline (a Reading in LLM mode, text deltas, then the Answer)."""
    return default_pipeline().ask_stream(question, **kwargs)


def chat(question: str, history: Optional[History] = None, **kwargs) -> Answer:
    """Answer a follow-up question with the default pipeline."""
    return default_pipeline().chat(question, history, **kwargs)
