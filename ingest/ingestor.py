"""Incremental, crash-safe ingestion into the Chroma index, and the IngestReport.

Write order for every batch of articles (what makes ``kill -9`` at any point safe):
1. a *pending* record naming the batch's article ids (in the meta collection),
2. the new chunks and sentence vectors (ids carry the content hash, so old and new versions never collide),
3. the article records: the commit point; queries only use chunks whose hash matches the record,
4. deletion of the articles' chunks and sentence vectors of any other hash, then of the pending record, then a
   version bump.
A run that finds a pending record of a dead process removes that batch's uncommitted chunks first.
Deletions (and an article turning into a duplicate) run under a pending record too: record first, then chunks.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from tqdm.auto import tqdm

from ingest.chunking import SPECIAL_TOKENS, Chunk, chunk_text
from ingest.loaders import SUPPORTED_SUFFIXES, Article, SkipFile, load_bytes, read_file, sha256_bytes
from ingest.sentence_vectors import pool_sentence_vectors
from rag.core.sentences import sentence_spans
from rag.core.settings import Settings, get_settings
from rag.index.embedder import Embedder
from rag.index.store import ArticleRecord, Store, chunk_id, now_iso

log = logging.getLogger(__name__)

TITLE_CHARS = 200  # the title is embedded with every chunk; longer titles are cut
TITLE_TOKEN_BUDGET = 64
PENDING_PREFIX = "pending:"
STALE_PENDING_SECONDS = 3600  # a pending batch of another host (or of a reused pid) is abandoned after this long


def _writer_host() -> str:
    """Where a process id means this process: the host name, plus the boot and the process-id namespace
    (containers that share a host name do not share process ids, so their pids must not be compared)."""
    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8])
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:  # not Linux: the host name alone
        pass
    return "/".join(parts)


WRITER_HOST = _writer_host()
# Pending batches this process is writing now. Another of its pending records is left by a write that failed
# here, and is repaired like a dead process's.
_IN_FLIGHT: set[str] = set()
_IN_FLIGHT_LOCK = threading.Lock()
# Chunks embedded and committed together; RAG_INGEST_GROUP_CHUNKS overrides it (tests use small groups).
GROUP_CHUNKS = int(os.environ.get("RAG_INGEST_GROUP_CHUNKS", "512"))


@dataclass
class SkippedFile:
    path: str
    reason: str


@dataclass
class IngestReport:
    """What an ingestion run did."""

    seen: int = 0
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (article id, id of the stored copy)
    skipped: list[SkippedFile] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    chunks_written: int = 0
    sentences_written: int = 0
    tokens_embedded: int = 0
    warnings: list[str] = field(default_factory=list)
    repaired: int = 0  # uncommitted batches of interrupted runs cleaned up
    seconds: float = 0.0
    embed_seconds: float = 0.0

    def summary(self) -> str:
        """The one-line summary printed at the end of a run."""
        return (
            f"{self.seen} files seen, {len(self.added)} added, {len(self.updated)} updated, "
            f"{self.unchanged} unchanged, {len(self.duplicates)} duplicates, {len(self.skipped)} skipped, "
            f"{len(self.pruned)} pruned, {self.chunks_written} chunks ({self.sentences_written} sentence vectors) "
            f"written in {self.seconds:.1f} s"
        )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Work:
    article_id: str
    article: Article
    root: str
    is_update: bool


@dataclass
class _EmbeddedGroup:
    """A group of articles whose chunks are encoded and not yet written."""

    pending_id: str
    group: list[tuple[_Work, list[Chunk]]]
    nodes: list[TextNode]
    tokens_of: list  # each node's token vectors (rag.index.store.TokenVectors), by node position


def article_id_for(path: Path, root: Path) -> str:
    """Stable article id: the path relative to the ingested root, with forward slashes."""
    return path.relative_to(root).as_posix()


def discover(paths: Iterable[Path | str], report: IngestReport) -> list[tuple[Path, Path]]:
    """(file, root) pairs for every supported file under ``paths``; bad paths go to ``report.skipped``."""
    found: list[tuple[Path, Path]] = []
    listed: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            report.skipped.append(SkippedFile(str(raw), "path does not exist"))
        elif path.is_dir():
            root = path.resolve()
            for file in sorted(root.rglob("*")):
                rel = file.relative_to(root)
                # A dangling symlink is kept: reading it reports the file as vanished instead of dropping it silently.
                if any(part.startswith(".") for part in rel.parts) or not (file.is_file() or file.is_symlink()):
                    continue
                if file.suffix.lower() not in SUPPORTED_SUFFIXES:
                    report.skipped.append(SkippedFile(str(file), f"unsupported file type {file.suffix or '(none)'}"))
                elif file not in listed:
                    listed.add(file)
                    found.append((file, root))
        else:
            resolved = path.resolve()
            if resolved not in listed:
                listed.add(resolved)
                found.append((resolved, resolved.parent))
    return found


class Ingestor:
    """Writes articles into one Store. Create with :func:`open_ingestor` or from a Pipeline's store."""

    def __init__(self, store: Store, settings: Optional[Settings] = None):
        self.store = store
        self.settings = settings or store.settings
        self.embedder: Embedder = store.embedder
        self.group_chunks = GROUP_CHUNKS
        budget = self.embedder.max_seq_length - SPECIAL_TOKENS - TITLE_TOKEN_BUDGET
        self.chunk_tokens = min(self.settings.chunk_tokens, budget)
        if self.chunk_tokens < self.settings.chunk_tokens:
            log.warning(
                "chunk_tokens=%d exceeds what %s can embed with the title; using %d",
                self.settings.chunk_tokens, self.embedder.name, self.chunk_tokens,
            )

    # --- public operations -------------------------------------------------------------------------
    def ingest(self, paths: Sequence[Path | str], *, prune: bool = False, progress: bool = True) -> IngestReport:
        """Add new, replace changed and (with ``prune``) remove vanished articles under ``paths``."""
        started = time.perf_counter()
        if isinstance(paths, (str, os.PathLike)):  # one path, not a sequence of its characters
            paths = [paths]
        report = IngestReport()
        try:
            self._ingest(paths, prune, progress, report)
        finally:
            # Bump even after a failure part-way: groups committed before it must reach other processes' BM25.
            if report.added or report.updated or report.duplicates or report.pruned or report.repaired:
                self.store.bump_version()
            report.seconds = time.perf_counter() - started
        return report

    def _ingest(self, paths: Sequence[Path | str], prune: bool, progress: bool, report: IngestReport) -> None:
        report.repaired = self.repair()
        files = discover(paths, report)
        report.seen = len(files) + sum(1 for s in report.skipped if s.reason != "path does not exist")
        existing = {r.article_id: r for r in self.store.all_articles()}
        canonical_by_sha = {r.sha256: r.article_id for r in existing.values() if not r.duplicate_of}
        work: list[_Work] = []
        duplicate_records: list[ArticleRecord] = []
        seen_ids: set[str] = set()
        max_bytes = int(self.settings.max_file_mb * 1_000_000)
        for file, root in tqdm(files, desc="reading", unit="file", disable=not progress):
            article_id = article_id_for(file, root)
            if article_id in seen_ids:  # e.g. two explicit files a/x.txt and b/x.txt: both would be "x.txt"
                report.skipped.append(SkippedFile(str(file), f"another file in this run has the article id {article_id!r}"))
                continue
            seen_ids.add(article_id)
            try:
                data = read_file(file, max_bytes)
                sha = sha256_bytes(data)
                old = existing.get(article_id)
                if old is not None and old.sha256 == sha:
                    report.unchanged += 1
                    continue
                if old is not None and old.root and old.root != str(root) and Path(old.source).exists():
                    raise SkipFile(
                        f"article id {article_id!r} is already used by {old.source}; ingest both from a common "
                        "parent folder, or delete that article first"
                    )
                article = load_bytes(data, file, source=str(file))
            except SkipFile as exc:
                report.skipped.append(SkippedFile(str(file), str(exc)))
                continue
            except Exception as exc:  # a loader bug must not stop the run; the file is reported
                log.exception("unexpected error loading %s", file)
                report.skipped.append(SkippedFile(str(file), f"unexpected error: {type(exc).__name__}: {exc}"))
                continue
            report.warnings += article.warnings
            canonical = canonical_by_sha.get(sha)
            if canonical is not None and canonical != article_id:
                duplicate_records.append(self._record(article_id, article, str(root), chunks=0, duplicate_of=canonical))
                report.duplicates.append((article_id, canonical))
                continue
            canonical_by_sha[sha] = article_id
            work.append(_Work(article_id, article, str(root), is_update=old is not None))

        # Duplicates of articles in this run are committed after their canonical copy (below).
        self._embed_and_commit(work, report, progress)
        if duplicate_records:
            self._commit_plain_records(duplicate_records, previous=existing)
        if prune:
            # Only the folders given are pruned: a file given by itself must not prune its siblings.
            roots = {str(Path(p).expanduser().resolve()) for p in paths if Path(p).expanduser().is_dir()}
            gone = [
                r.article_id for r in existing.values()
                if r.root in roots and r.article_id not in seen_ids
            ]
            for article_id in gone:
                self._delete_one(article_id)
            report.pruned = gone
        self._promote_orphaned_duplicates(report, progress)

    def delete(self, article_id: str) -> bool:
        """Delete one article (its chunks and record); False when no such article is indexed."""
        if not self.store.get_articles([article_id]):
            return False
        self._delete_one(article_id)
        self._promote_orphaned_duplicates(IngestReport(), progress=False)
        self.store.bump_version()
        return True

    def repair(self) -> int:
        """Remove uncommitted chunks left by interrupted runs; returns how many batches were repaired."""
        got = self.store.meta.get(where={"kind": "pending"}, include=["metadatas"])
        repaired = 0
        for pending_id, meta in zip(got["ids"], got["metadatas"]):
            if not _is_stale(pending_id, meta):
                continue
            ids = json.loads(meta.get("article_ids", "[]"))
            committed = self.store.get_articles(ids)
            for article_id in ids:
                record = committed.get(article_id)
                keep = record.sha256 if record and not record.duplicate_of else None
                if keep is None:
                    self.store.delete_chunks_of(article_id)
                else:
                    self.store.delete_chunks_of(article_id, keep_sha=keep)
            self.store.meta.delete(ids=[pending_id])
            repaired += 1
        if repaired:
            log.warning("cleaned up %d batch(es) left by an interrupted ingestion", repaired)
        return repaired

    # --- internals ----------------------------------------------------------------------------------
    def _record(
        self, article_id: str, article: Article, root: str, chunks: int, duplicate_of: str = "",
        sentences: Optional[list[tuple[int, int, int]]] = None,
    ) -> ArticleRecord:
        return ArticleRecord(
            article_id=article_id, title=article.title, source=article.source, sha256=article.sha256,
            chunks=chunks, ingested_at=now_iso(), format=article.format, published=article.published,
            author=article.author, url=article.url, root=root, duplicate_of=duplicate_of,
            page_starts=article.page_starts, sentences=sentences, text=article.text,
        )

    def _chunks_for(self, article: Article) -> list[Chunk]:
        return chunk_text(
            article.text, tokenize=self.embedder.tokenize, chunk_tokens=self.chunk_tokens,
            chunk_overlap=self.settings.chunk_overlap, page_starts=article.page_starts or None,
        )

    def _embed_and_commit(self, work: list[_Work], report: IngestReport, progress: bool) -> None:
        if not work:
            return
        planned = [(w, self._chunks_for(w.article)) for w in work]
        total = sum(len(chunks) for _, chunks in planned)
        groups: list[list[tuple[_Work, list[Chunk]]]] = [[]]
        size = 0
        for item in planned:
            if size >= self.group_chunks:
                groups.append([])
                size = 0
            groups[-1].append(item)
            size += len(item[1])
        bar = tqdm(total=total, desc="embedding", unit="chunk", disable=not progress)
        # Group k is written to Chroma (and its sentence vectors pooled) by one writer thread while group k+1 is
        # encoded: the encoder's matrix work releases the GIL, and the writes no longer add to the run's time.
        # One write in flight at a time, and each group keeps the crash-safe write order within itself.
        writing: Optional[Future] = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer") as writer:
            try:
                for group in groups:
                    embedded = self._embed_group(group, report)
                    if writing is not None:
                        try:
                            writing.result()
                        except BaseException:
                            self._end(embedded.pending_id)  # nothing of this group was written
                            raise
                    writing = writer.submit(self._write_group, embedded, report, bar)
                if writing is not None:
                    writing.result()
                    writing = None
            finally:
                if writing is not None:  # the encoder failed: let the group being written finish
                    wait([writing])
                bar.close()

    def _begin(self, ids: list[str]) -> str:
        """Write the pending record naming ``ids`` (step 1 of every write); returns its id."""
        pending_id = f"{PENDING_PREFIX}{WRITER_HOST}:{os.getpid()}:{time.time_ns()}"
        with _IN_FLIGHT_LOCK:
            _IN_FLIGHT.add(pending_id)
        self.store.meta.upsert(
            ids=[pending_id], embeddings=[[1.0]],
            metadatas=[{"kind": "pending", "article_ids": json.dumps(ids), "host": WRITER_HOST,
                        "pid": os.getpid(), "at": time.time()}],
        )
        return pending_id

    def _end(self, pending_id: str) -> None:
        """Remove the pending record of a batch that is complete (or of which nothing was written)."""
        try:
            self.store.meta.delete(ids=[pending_id])
        finally:
            _abandon(pending_id)

    @contextmanager
    def _batch(self, ids: list[str]):
        """A write under a pending record: removed when the write completes, left for repair when it fails."""
        pending_id = self._begin(ids)
        try:
            yield pending_id
        except BaseException:
            _abandon(pending_id)
            raise
        self._end(pending_id)

    def _embed_group(self, group: list[tuple[_Work, list[Chunk]]], report: IngestReport) -> "_EmbeddedGroup":
        """Step 1 of the write order (the pending record), then the chunks' vectors and token vectors."""
        pending_id = self._begin([w.article_id for w, _ in group])
        try:
            nodes, tokens_of = self._embed_nodes(group, report)
        except BaseException:
            self._end(pending_id)  # nothing of this group was written
            raise
        return _EmbeddedGroup(pending_id, group, nodes, tokens_of)

    def _embed_nodes(self, group: list[tuple[_Work, list[Chunk]]], report: IngestReport) -> tuple[list[TextNode], list]:
        """The group's chunks as nodes carrying their vectors, and each node's token vectors."""
        nodes: list[TextNode] = []
        for w, chunks in group:
            title = self._embed_title(w.article.title)
            for chunk in chunks:
                nodes.append(self._node(w, chunk, title))
        # Sorting by length keeps padding low inside each encoder batch.
        order = sorted(range(len(nodes)), key=lambda i: len(nodes[i].text) + len(nodes[i].metadata["title"]))
        texts = [embed_text(nodes[i].metadata["title"], nodes[i].text) for i in order]
        t0 = time.perf_counter()
        vectors, token_vectors = self.embedder.embed_texts_with_tokens(texts)
        report.embed_seconds += time.perf_counter() - t0
        report.tokens_embedded += sum(len(tokens.spans) for tokens in token_vectors)
        tokens_of: list = [None] * len(nodes)
        for i, vector, tokens in zip(order, vectors, token_vectors):
            nodes[i].embedding = vector
            tokens_of[i] = tokens
        return nodes, tokens_of

    def _write_group(self, embedded: "_EmbeddedGroup", report: IngestReport, bar) -> None:
        """Steps 2 to 4 of the write order for one embedded group: chunks, sentence vectors, the records
        (the commit point), then the articles' older versions and the pending record."""
        try:
            self._write_nodes(embedded, report)
        except BaseException:
            _abandon(embedded.pending_id)  # what was written stays under the pending record, for repair
            raise
        self._end(embedded.pending_id)
        report.chunks_written += len(embedded.nodes)
        bar.update(len(embedded.nodes))

    def _write_nodes(self, embedded: "_EmbeddedGroup", report: IngestReport) -> None:
        group, nodes, tokens_of = embedded.group, embedded.nodes, embedded.tokens_of
        self.store.add_chunks(nodes)
        # Sentence vectors before the commit point too: a committed article always has them.
        position, records, sentence_rows = 0, [], []
        for w, chunks in group:
            mine = slice(position, position + len(chunks))
            position += len(chunks)
            sentences = pool_sentence_vectors(
                sentence_spans(w.article.text), chunks, tokens_of[mine],
                [len(embed_text(n.metadata["title"], n.text)) - len(n.text) for n in nodes[mine]],
            )
            by_chunk: dict[int, list] = {}
            for start, _, chunk, vector in sentences:
                if vector is not None:
                    by_chunk.setdefault(chunk, []).append((start, vector))
            sentence_rows += [(w.article_id, w.article.sha256, n, found) for n, found in sorted(by_chunk.items())]
            report.sentences_written += sum(len(rows) for rows in by_chunk.values())
            records.append(self._record(
                w.article_id, w.article, w.root, len(chunks), sentences=[(a, b, c) for a, b, c, _ in sentences]
            ))
        self.store.put_sentences(sentence_rows)
        self.store.put_articles(records)
        for w, _ in group:
            if w.is_update:
                self.store.delete_chunks_of(w.article_id, keep_sha=w.article.sha256)
                report.updated.append(w.article_id)
            else:
                report.added.append(w.article_id)

    def _embed_title(self, title: str) -> str:
        """The title as embedded with every chunk: at most TITLE_CHARS characters and TITLE_TOKEN_BUDGET tokens."""
        title = title[:TITLE_CHARS]
        if len(self.embedder.tokenize(title)) <= TITLE_TOKEN_BUDGET:
            return title
        try:  # fast tokenizers give each token's character span: cut after the last token that fits
            spans = self.embedder.tokenizer(title, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            return title[: spans[TITLE_TOKEN_BUDGET - 1][1]].rstrip()
        except (NotImplementedError, KeyError, IndexError, TypeError):
            while title and len(self.embedder.tokenize(title)) > TITLE_TOKEN_BUDGET:
                title = title[: len(title) * 9 // 10].rstrip()
            return title

    @staticmethod
    def _node(w: _Work, chunk: Chunk, title: str) -> TextNode:
        keys = ["article_id", "sha256", "title", "source", "page", "chunk", "start", "end"]
        node = TextNode(
            id_=chunk_id(w.article_id, w.article.sha256, chunk.index),
            text=chunk.text,
            start_char_idx=chunk.start,
            end_char_idx=chunk.end,
            metadata={
                "article_id": w.article_id, "sha256": w.article.sha256, "title": title,
                "source": w.article.source, "page": chunk.page, "chunk": chunk.index,
                "start": chunk.start, "end": chunk.end,
            },
            excluded_embed_metadata_keys=keys,
            excluded_llm_metadata_keys=keys,
        )
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=w.article_id)
        return node

    def _commit_plain_records(self, records: list[ArticleRecord], previous: dict[str, ArticleRecord]) -> None:
        """Commit chunk-less records (duplicates); a former canonical article loses its chunks.

        Under a pending record, so that a run killed between the two steps leaves no chunks behind (repair
        deletes the chunks of an article whose record is a duplicate).
        """
        with self._batch([r.article_id for r in records]):
            self.store.put_articles(records)
            for record in records:
                old = previous.get(record.article_id)
                if old is not None and not old.duplicate_of:
                    self.store.delete_chunks_of(record.article_id)

    def _delete_one(self, article_id: str) -> None:
        # Record first, then chunks, under a pending record: a kill in between leaves chunks that repair removes,
        # never a record without chunks that an unchanged file would then keep forever.
        with self._batch([article_id]):
            self.store.delete_articles([article_id])
            self.store.delete_chunks_of(article_id)

    def _promote_orphaned_duplicates(self, report: IngestReport, progress: bool) -> None:
        """Duplicates whose stored copy was deleted or changed: the first becomes the stored copy."""
        records = {r.article_id: r for r in self.store.all_articles()}
        orphans: dict[str, list[ArticleRecord]] = {}
        for r in records.values():
            target = records.get(r.duplicate_of) if r.duplicate_of else None
            if r.duplicate_of and (target is None or target.sha256 != r.sha256 or target.duplicate_of):
                orphans.setdefault(r.sha256, []).append(r)
        if not orphans:
            return
        canonical_by_sha = {r.sha256: r.article_id for r in records.values() if not r.duplicate_of}
        work, repointed = [], []
        for sha, group in orphans.items():
            group.sort(key=lambda r: r.article_id)
            head = canonical_by_sha.get(sha)
            if head is None:
                full = self.store.get_articles([group[0].article_id], with_text=True)[group[0].article_id]
                article = Article(
                    text=full.text or "", title=full.title, source=full.source, sha256=full.sha256,
                    format=full.format, published=full.published, author=full.author, url=full.url,
                    page_starts=full.page_starts,
                )
                work.append(_Work(full.article_id, article, full.root, is_update=True))
                head = full.article_id
                group = group[1:]
            for r in group:
                r.duplicate_of = head
                repointed.append(r)
        self._embed_and_commit(work, report, progress)
        if repointed:
            texts = self.store.get_articles([r.article_id for r in repointed], with_text=True)
            for r in repointed:
                r.text = texts[r.article_id].text
            self.store.put_articles(repointed)


def embed_text(title: str, text: str) -> str:
    """What the encoder sees for a chunk: its article's title line, then the chunk."""
    return f"{title}\n{text}" if title else text


def _abandon(pending_id: str) -> None:
    with _IN_FLIGHT_LOCK:
        _IN_FLIGHT.discard(pending_id)


def _is_stale(pending_id: str, meta: dict) -> bool:
    """A pending batch whose writer is gone: a dead pid on this host, a write of this process that failed, or
    too old (any host: pids get reused)."""
    if meta.get("host") == WRITER_HOST:
        pid = int(meta.get("pid", 0))
        if pid == os.getpid():
            with _IN_FLIGHT_LOCK:
                return pending_id not in _IN_FLIGHT
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
    return time.time() - float(meta.get("at", 0)) > STALE_PENDING_SECONDS


# --- convenience functions (the Python API) -------------------------------------------------------------
def open_ingestor(settings: Optional[Settings] = None) -> Ingestor:
    """Load the embedder and open the index named by ``settings``."""
    settings = settings or get_settings()
    return Ingestor(Store(settings, Embedder(settings)), settings)


def ingest_paths(
    paths: Sequence[Path | str], settings: Optional[Settings] = None, *, prune: bool = False, progress: bool = True
) -> IngestReport:
    """Ingest files and folders into the index of ``settings`` (see :meth:`Ingestor.ingest`)."""
    return open_ingestor(settings).ingest(paths, prune=prune, progress=progress)


def delete_article(article_id: str, settings: Optional[Settings] = None) -> bool:
    """Delete one article by id; False when it is not indexed."""
    return open_ingestor(settings).delete(article_id)


def list_articles(settings: Optional[Settings] = None) -> list[ArticleRecord]:
    """Every indexed article (id, title, source, chunks, when ingested, duplicate_of)."""
    settings = settings or get_settings()
    return Store(settings, Embedder(settings)).all_articles()
