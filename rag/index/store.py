"""The index: the Chroma client (embedded or server), its four collections, and the records stored in them.

Everything the product keeps lives in Chroma, so several app processes sharing one Chroma server see one
state and nothing beside it can diverge:

- ``<name>_chunks``: one record per chunk (embedding, text, span, article metadata), written through
  LlamaIndex's ``ChromaVectorStore`` so a plain LlamaIndex ``VectorStoreIndex`` can read it too.
- ``<name>_articles``: one record per article with its full extracted text (so spans resolve without the
  source file) and metadata. An article record is written *after* its chunks and names the content hash
  its chunks must carry: it is the commit marker that makes a half-written article invisible.
- ``<name>_sentences``: for every chunk (same id), the vectors of the sentences pooled in it from the
  encoder's token vectors, packed in one record (a record per sentence would cost Chroma four times the
  writes); answering scores sentences on meaning without running the encoder again.
- ``<name>_meta``: the index version, a token rewritten after every change, which tells each process
  when its in-memory BM25 index is stale; and the pending-batch records of ingestion's crash-safe journal.

This module is the only code that knows Chroma, the collection layout, the metadata keys and the id
formats; everything else uses :class:`Store`'s named methods and the records below.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from typing import Iterable, Optional

import numpy as np

from rag.core.errors import IndexMismatch, IndexProblem
from rag.core.settings import Settings
from rag.index.client import open_client, rebuild_advice, retrying
from rag.index.embedder import Embedder
from rag.index.records import ArticleRecord, ChunkRecord, PendingBatch, chunk_id, chunk_is_current, now_iso

__all__ = ["Store", "ArticleRecord", "ChunkRecord", "PendingBatch", "chunk_id", "chunk_is_current", "now_iso",
           "LAYOUT"]

log = logging.getLogger(__name__)

_VERSION_ID = "index_version"
_GET_PAGE = 2000  # records per Chroma get() when reading a whole collection
_LAYOUT_ID = "index_layout"
LAYOUT = 1  # the collection layout this code reads and writes; an index of another layout must be rebuilt
_PENDING = "pending"


class Store:
    """The four Chroma collections of one index, opened for a given embedder. Safe to share between threads."""

    def __init__(self, settings: Settings, embedder: Embedder, client=None):
        self.settings = settings
        self.embedder = embedder
        self._client = client or open_client(settings)
        self._open_collections()

    @retrying
    def _open_collections(self) -> None:
        from llama_index.vector_stores.chroma import ChromaVectorStore

        settings, embedder = self.settings, self.embedder
        name = settings.collection
        self._chunks = self._client.get_or_create_collection(
            f"{name}_chunks",
            metadata={"hnsw:space": "cosine", "embed_model": embedder.name, "embed_dim": embedder.dim},
            embedding_function=None,
        )
        meta = self._chunks.metadata or {}
        if meta.get("embed_model") != embedder.name or int(meta.get("embed_dim", -1)) != embedder.dim:
            raise IndexMismatch(
                f"The index at {settings.index_location} was built with embedding model "
                f"{meta.get('embed_model')!r} ({meta.get('embed_dim')} dimensions), but {embedder.name!r} "
                f"({embedder.dim} dimensions) is configured. Use the same RAG_EMBED_MODEL, or another "
                "RAG_COLLECTION / RAG_DATA_DIR for a new index."
            )
        self._articles = self._client.get_or_create_collection(f"{name}_articles", embedding_function=None)
        self._meta = self._client.get_or_create_collection(f"{name}_meta", embedding_function=None)
        # Found by id only: the embedding is a placeholder, the vectors are in the metadata.
        self._sentences = self._client.get_or_create_collection(f"{name}_sentences", embedding_function=None)
        self.vector_store = ChromaVectorStore(chroma_collection=self._chunks)  # the LlamaIndex view of the chunks
        self._check_layout()

    def _check_layout(self) -> None:
        """Refuse an index of another collection layout (saying how to rebuild); stamp a new, empty one."""
        got = self._meta.get(ids=[_LAYOUT_ID], include=["metadatas"])
        if got["ids"]:
            layout = (got["metadatas"][0] or {}).get("layout")
            if layout != LAYOUT:
                raise IndexProblem(f"The index at {self.settings.index_location} has layout {layout}, but this "
                                   f"version reads layout {LAYOUT}. {rebuild_advice(self.settings)}")
            return
        if self._chunks.count() or self._articles.count():
            raise IndexProblem(f"The index at {self.settings.index_location} was written by an earlier development "
                               f"version (it records no layout). {rebuild_advice(self.settings)}")
        self._meta.upsert(ids=[_LAYOUT_ID], embeddings=[[1.0]], metadatas=[{"layout": LAYOUT}])

    def close(self) -> None:
        """Release the Chroma client's cached state (before a temporary index folder is removed)."""
        self._client.clear_system_cache()

    # --- index version --------------------------------------------------------------------------
    @retrying
    def version(self) -> str:
        """The token of the index's current state ("" for a never-written index)."""
        got = self._meta.get(ids=[_VERSION_ID], include=["metadatas"])
        return (got["metadatas"][0] or {}).get("token", "") if got["ids"] else ""

    @retrying
    def bump_version(self) -> str:
        """Record that the index changed (after every write); returns the new token."""
        token = uuid.uuid4().hex
        self._meta.upsert(ids=[_VERSION_ID], embeddings=[[1.0]], metadatas=[{"token": token, "at": now_iso()}])
        return token

    # --- counts -----------------------------------------------------------------------------------
    @retrying
    def article_count(self) -> int:
        """Number of article records (duplicates included)."""
        return self._articles.count()

    @retrying
    def chunk_count(self) -> int:
        """Number of chunk records."""
        return self._chunks.count()

    @retrying
    def batch_size(self) -> int:
        """How many records one Chroma write may carry (Chroma refuses larger batches)."""
        return max(1, min(1000, self._client.get_max_batch_size()))

    # --- articles ---------------------------------------------------------------------------------
    @retrying
    def put_articles(self, records: list[ArticleRecord]) -> None:
        """Write article records (the commit point for their chunks)."""
        step = self.batch_size()
        for i in range(0, len(records), step):
            batch = records[i : i + step]
            self._articles.upsert(
                ids=[r.article_id for r in batch],
                embeddings=[[1.0]] * len(batch),
                documents=[r.text or "" for r in batch],
                metadatas=[r._to_metadata() for r in batch],
            )

    @retrying
    def update_article_metadata(self, records: list[ArticleRecord]) -> None:
        """Rewrite the metadata of stored article records (their text and chunks stay as they are)."""
        step = self.batch_size()
        for i in range(0, len(records), step):
            batch = records[i : i + step]
            self._articles.update(ids=[r.article_id for r in batch], metadatas=[r._to_metadata() for r in batch])

    @retrying
    def get_articles(self, ids: Iterable[str], with_text: bool = False) -> dict[str, ArticleRecord]:
        """Article records by id (missing ids are absent from the result)."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        include = ["metadatas", "documents"] if with_text else ["metadatas"]
        got = self._articles.get(ids=ids, include=include)
        docs = got.get("documents") or [None] * len(got["ids"])
        return {
            i: ArticleRecord._from_chroma(i, m, d if with_text else None)
            for i, m, d in zip(got["ids"], got["metadatas"], docs)
        }

    @retrying
    def all_articles(self) -> list[ArticleRecord]:
        """Every article record (without text), in id order."""
        records = []
        for page in self._pages(self._articles, ["metadatas"]):
            records += [ArticleRecord._from_chroma(i, m) for i, m in zip(page["ids"], page["metadatas"])]
        return sorted(records, key=lambda r: r.article_id)

    @retrying
    def delete_articles(self, ids: list[str]) -> None:
        """Remove article records (their chunks are removed separately, see ingest's write order)."""
        if ids:
            self._articles.delete(ids=ids)

    # --- chunks -----------------------------------------------------------------------------------
    @retrying
    def add_chunks(self, chunks: list[ChunkRecord], embeddings: list[list[float]]) -> None:
        """Write chunks with their embeddings through LlamaIndex's ChromaVectorStore, in batches Chroma accepts
        (one long article can have more chunks than one batch may carry)."""
        nodes = [chunk._to_node(embedding) for chunk, embedding in zip(chunks, embeddings, strict=True)]
        step = self.batch_size()
        for i in range(0, len(nodes), step):
            self.vector_store.add(nodes[i : i + step])

    @retrying
    def committed_chunks(self, records: Optional[list[ArticleRecord]] = None) -> list[ChunkRecord]:
        """Every chunk of the current version of a stored (non-duplicate) article, in chunk-id order.

        Chunks of a batch being written, or of an article version replaced since, are left out: what this
        returns is exactly what answering may quote. ``records``: the article records, when already read.
        """
        records = self.all_articles() if records is None else records
        committed = {r.article_id: r.sha256 for r in records if not r.duplicate_of}
        chunks = [
            ChunkRecord._from_chroma(text, meta)
            for page in self._pages(self._chunks, ["documents", "metadatas"])
            for text, meta in zip(page["documents"], page["metadatas"])
            if committed.get(meta.get("article_id")) == meta.get("sha256")
        ]
        return sorted(chunks, key=lambda c: c.chunk_id)  # deterministic whatever order Chroma returns

    @retrying
    def chunk_ids(self, article_id: str, sha256: Optional[str] = None) -> list[str]:
        """Ids of the stored chunks of ``article_id`` (of content hash ``sha256`` only, when given)."""
        where: dict = {"article_id": article_id}
        if sha256 is not None:
            where = {"$and": [where, {"sha256": sha256}]}
        return self._chunks.get(where=where, include=[])["ids"]

    @retrying
    def dense_query(self, embedding: list[float], n: int) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the ``n`` chunks nearest ``embedding``, nearest first; ``n`` at most
        :meth:`chunk_count` (callers bound it by what they hold, sparing a round trip).

        Ids and distances only: a quarter of the time of also reading the texts back.
        """
        if n <= 0:
            return []
        got = self._chunks.query(query_embeddings=[embedding], n_results=n, include=["distances"])
        return [(i, 1.0 - float(dist)) for i, dist in zip(got["ids"][0], got["distances"][0])]

    @retrying
    def chunk_embeddings(self, ids: list[str]) -> dict[str, np.ndarray]:
        """The stored embeddings of the chunks with these ids."""
        if not ids:
            return {}
        got = self._chunks.get(ids=list(dict.fromkeys(ids)), include=["embeddings"])
        return {i: np.asarray(e) for i, e in zip(got["ids"], got["embeddings"])}

    @retrying
    def delete_chunks_of(self, article_id: str, keep_sha: Optional[str] = None) -> None:
        """Delete an article's chunks and sentence vectors, optionally keeping those of content hash ``keep_sha``."""
        where: dict = {"article_id": article_id}
        if keep_sha is not None:
            where = {"$and": [{"article_id": article_id}, {"sha256": {"$ne": keep_sha}}]}
        self._chunks.delete(where=where)
        self._sentences.delete(where=where)

    # --- sentence vectors -------------------------------------------------------------------------
    @retrying
    def put_sentences(self, rows: list[tuple[str, str, int, list[tuple[int, np.ndarray]]]]) -> None:
        """Store sentence vectors, a record per chunk: (article id, content hash, chunk index, [(start, vector)])."""
        step = self.batch_size()
        for i in range(0, len(rows), step):
            batch = rows[i : i + step]
            self._sentences.upsert(
                ids=[chunk_id(article_id, sha, index) for article_id, sha, index, _ in batch],
                embeddings=[[1.0]] * len(batch),
                metadatas=[
                    {
                        "article_id": article_id, "sha256": sha,
                        "starts": ",".join(str(start) for start, _ in vectors),
                        # float16 halves the record; cosine scores move by about 1e-3
                        "vectors": base64.b64encode(
                            np.asarray([v for _, v in vectors], dtype=np.float16).tobytes()
                        ).decode(),
                    }
                    for article_id, sha, _, vectors in batch
                ],
            )

    @retrying
    def sentence_vectors(self, chunks: list[str]) -> dict[tuple[str, int], np.ndarray]:
        """The stored sentence vectors of the chunks with these ids, as {(article id, sentence start): vector}."""
        if not chunks:
            return {}
        got = self._sentences.get(ids=list(dict.fromkeys(chunks)), include=["metadatas"])
        vectors = {}
        for meta in got["metadatas"]:
            if not meta or "vectors" not in meta:
                continue
            starts = [int(x) for x in meta["starts"].split(",") if x]
            packed = np.frombuffer(base64.b64decode(meta["vectors"]), dtype=np.float16).astype(np.float32)
            for start, vector in zip(starts, packed.reshape(len(starts), -1) if starts else []):
                vectors[(meta["article_id"], start)] = vector
        return vectors

    @retrying
    def sentence_record_ids(self, article_id: str) -> list[str]:
        """Ids of the sentence-vector records (one per chunk) of ``article_id``."""
        return self._sentences.get(where={"article_id": article_id}, include=[])["ids"]

    # --- the ingestion journal --------------------------------------------------------------------
    @retrying
    def put_pending(self, batch: PendingBatch) -> None:
        """Write (or replace) a pending-batch record."""
        self._meta.upsert(
            ids=[batch.pending_id], embeddings=[[1.0]],
            metadatas=[{"kind": _PENDING, "article_ids": json.dumps(batch.article_ids), "host": batch.host,
                        "pid": batch.pid, "at": batch.at, "started": batch.started}],
        )

    @retrying
    def pending_batches(self) -> list[PendingBatch]:
        """Every pending-batch record."""
        got = self._meta.get(where={"kind": _PENDING}, include=["metadatas"])
        return [
            PendingBatch(pending_id, json.loads(m.get("article_ids", "[]")), str(m.get("host", "")),
                         int(m.get("pid", 0)), float(m.get("at", 0)), int(m.get("started", 0)))
            for pending_id, m in zip(got["ids"], got["metadatas"])
        ]

    @retrying
    def delete_pending(self, pending_id: str) -> None:
        """Remove a pending-batch record."""
        self._meta.delete(ids=[pending_id])

    @staticmethod
    def _pages(collection, include: list[str]):
        offset = 0
        while True:
            page = collection.get(include=include, limit=_GET_PAGE, offset=offset)
            if not page["ids"]:
                return
            yield page
            offset += len(page["ids"])
            if len(page["ids"]) < _GET_PAGE:
                return
