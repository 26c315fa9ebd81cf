"""Evaluation indexes built once and cached outside the repository, keyed by the corpus and the code that built them.

Indexing a whole evaluation corpus takes minutes (all of RealTime QA about 20 on 2 cores), so ``rag eval
--corpus DIR``, the quality tests and the benchmarks reuse an index built earlier when nothing that shapes
it has changed: the corpus files (paths and bytes), the ingestion code, and the embedding and chunking
settings. A cached index is built in a temporary folder beside the cache and renamed into place only when
complete, so an interrupted build is never taken for a finished one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Optional

from rag.core.settings import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)

# The code that decides what an index holds (which files, their text, metadata, chunks, vectors, records); the
# CLI, the report, the crash-safety journal and the Chroma connection code do not change it.
INDEX_CODE = [
    "ingest/discovery.py", "ingest/loaders.py", "ingest/metadata.py", "ingest/manifest.py", "ingest/chunking.py",
    "ingest/sentence_vectors.py", "ingest/writer.py", "ingest/ingestor.py", "rag/index/records.py",
    "rag/index/store.py", "rag/index/embedder.py", "rag/core/sentences.py", "rag/core/text.py", "rag/core/types.py",
]
INDEX_SETTINGS = [
    "embed_model", "chunk_tokens", "chunk_overlap", "max_file_mb", "max_pdf_pages", "max_text_chars", "collection",
]


def corpus_fingerprint(corpus: Path) -> str:
    """SHA-256 over every file's relative path and bytes under ``corpus`` (a few seconds for 2,400 articles)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in corpus.rglob("*") if p.is_file()):
        digest.update(file.relative_to(corpus).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def code_fingerprint(settings: Settings) -> str:
    """SHA-256 over the ingestion code and the settings that shape an index."""
    digest = hashlib.sha256()
    for pattern in INDEX_CODE:
        for file in sorted(PROJECT_ROOT.glob(pattern)):
            digest.update(file.relative_to(PROJECT_ROOT).as_posix().encode() + b"\0" + file.read_bytes())
    for name in INDEX_SETTINGS:
        digest.update(f"{name}={getattr(settings, name)}\n".encode())
    return digest.hexdigest()


def index_key(corpus: Path, settings: Settings, manifest: Optional[Path] = None) -> str:
    """The cache key of ``corpus`` (with its ``manifest``) indexed by this code with these settings:
    ``<folder name>-<hash>``."""
    parts = corpus_fingerprint(corpus) + code_fingerprint(settings)
    if manifest is not None:
        parts += hashlib.sha256(Path(manifest).read_bytes()).hexdigest()
    return f"{corpus.name}-{hashlib.sha256(parts.encode()).hexdigest()[:16]}"


def sidecar_manifest(corpus: Path) -> Optional[Path]:
    """The manifest beside a corpus folder, ``<folder>.jsonl``, or None."""
    beside = corpus.with_name(corpus.name + ".jsonl")
    return beside if beside.is_file() else None


def cached_index(
    corpus: Path, settings: Settings, *, progress: bool = True, embedder=None, manifest: Optional[Path] = None
) -> Settings:
    """Settings of an index of ``corpus``: the cached one if its key matches, else one built now and cached.

    ``settings`` supplies the embedding and chunking settings and ``eval_cache`` (where indexes are kept);
    the returned Settings differ only in ``data_dir`` (embedded Chroma, never a server). ``manifest``: a
    manifest of the corpus's publish dates and sources outside the folder (see ``python -m ingest --manifest``);
    default: ``<folder>.jsonl`` beside the folder when there is one (RealTime QA's ``articles.jsonl``).
    """
    corpus = Path(corpus).resolve()
    if not corpus.is_dir():
        raise FileNotFoundError(f"no such corpus folder: {corpus}")
    manifest = manifest if manifest is not None else sidecar_manifest(corpus)
    cache = settings.eval_cache
    target = cache / index_key(corpus, settings, manifest)
    indexed = settings.model_copy(update={"data_dir": target, "chroma_path": None, "chroma_host": None})
    if (target / "complete").is_file():
        log.info("reusing the cached index of %s at %s", corpus, target)
        return indexed
    cache.mkdir(parents=True, exist_ok=True)
    building = cache / f"{target.name}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    from rag.app import open_services  # the composition module: loaded only when an index must be built

    build_settings = indexed.model_copy(update={"data_dir": building})
    services = open_services(build_settings, embedder=embedder)
    report = services.ingestor.ingest([corpus], progress=progress, manifest=manifest)
    log.info("indexed %s: %s", corpus, report.summary())
    del services
    (building / "complete").write_text(report.summary() + "\n")
    try:
        building.rename(target)
    except OSError:  # another process finished the same index first: use its copy
        shutil.rmtree(building, ignore_errors=True)
    return indexed
