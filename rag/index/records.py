"""The records the index stores: articles, chunks and ingestion's pending batches, with their ids."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional

from rag.core.types import ArticleMeta


@dataclass(kw_only=True)
class ArticleRecord(ArticleMeta):
    """What the index knows about one article: its metadata, where it came from and, on request, its text."""

    article_id: str
    chunks: int
    ingested_at: str
    root: str = ""  # the folder it was ingested from ("" for an upload)
    duplicate_of: str = ""  # the article id of the stored copy when this one is a byte-identical duplicate
    # (start, end, chunk) of every sentence of the text, as rag.core.sentences.sentence_spans splits it, with the
    # index of the chunk whose record in <name>_sentences holds its vector (-1: none). Stored at ingest so that
    # answering does not split again.
    sentences: list[tuple[int, int, int]] = field(default_factory=list)
    text: Optional[str] = None

    def _to_metadata(self) -> dict:
        meta = {k: v for k, v in self.__dict__.items() if k not in ("article_id", "text", "page_starts", "sentences")}
        meta["page_starts"] = json.dumps(self.page_starts)
        meta["sentences"] = json.dumps([v for span in self.sentences for v in span], separators=(",", ":"))
        return meta

    @classmethod
    def _from_chroma(cls, article_id: str, meta: dict, text: Optional[str] = None) -> "ArticleRecord":
        meta = dict(meta or {})
        starts = json.loads(meta.pop("page_starts", "[]") or "[]")
        flat = json.loads(meta.pop("sentences", "[]") or "[]")
        known = {k: meta[k] for k in cls.__dataclass_fields__ if k in meta}
        return cls(article_id=article_id, page_starts=starts, sentences=list(zip(flat[::3], flat[1::3], flat[2::3])),
                   text=text, **known)


@dataclass(frozen=True)
class ChunkRecord:
    """One chunk as stored: ``text == article_text[start:end]``; ``title`` is the title embedded with it."""

    article_id: str
    sha256: str  # the content hash of the article version it was cut from
    index: int
    text: str
    start: int
    end: int
    title: str = ""
    source: str = ""
    page: int = 0

    @property
    def chunk_id(self) -> str:
        return chunk_id(self.article_id, self.sha256, self.index)

    def _to_node(self, embedding: list[float]):
        """A LlamaIndex ``TextNode`` (what ``ChromaVectorStore`` writes, so a plain ``VectorStoreIndex`` reads it)."""
        from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

        metadata = {
            "article_id": self.article_id, "sha256": self.sha256, "title": self.title, "source": self.source,
            "page": self.page, "chunk": self.index, "start": self.start, "end": self.end,
        }
        node = TextNode(
            id_=self.chunk_id, text=self.text, start_char_idx=self.start, end_char_idx=self.end, metadata=metadata,
            excluded_embed_metadata_keys=list(metadata), excluded_llm_metadata_keys=list(metadata),
            embedding=embedding,
        )
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=self.article_id)
        return node

    @classmethod
    def _from_chroma(cls, text: str, meta: dict) -> "ChunkRecord":
        return cls(
            article_id=meta["article_id"], sha256=meta["sha256"], index=int(meta["chunk"]), text=text,
            start=int(meta["start"]), end=int(meta["end"]), title=meta.get("title", ""),
            source=meta.get("source", ""), page=int(meta.get("page", 0) or 0),
        )


@dataclass
class PendingBatch:
    """A journal record of ingestion: a batch of articles being written by ``host``/``pid`` since ``at``."""

    pending_id: str
    article_ids: list[str]
    host: str
    pid: int
    at: float
    started: int = 0  # when the writing process started (clock ticks since boot; 0: unknown), to tell reused pids


def chunk_id(article_id: str, sha256: str, index: int) -> str:
    """The id of a chunk (and of its sentence vectors): article, content hash and chunk index."""
    return f"{article_id}#{sha256[:16]}#{index}"


def chunk_is_current(chunk: str, record: ArticleRecord) -> bool:
    """Whether the chunk with id ``chunk`` was cut from the article version ``record`` describes."""
    return chunk.startswith(f"{record.article_id}#{record.sha256[:16]}#")


def now_iso() -> str:
    """The current UTC time, ISO-8601, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()
