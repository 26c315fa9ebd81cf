"""Embedding articles' chunks in groups and writing each group in the crash-safe order (see ``ingest.ingestor``).

Articles are cut into chunks and gathered into groups of about ``settings.ingest_group_chunks`` chunks. Each
group is one pending batch of the journal: encoded (chunk vectors and token vectors), then written by a writer
thread (chunks, sentence vectors pooled from the token vectors, then the article records: the commit point)
while the next group is encoded.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Optional

from tqdm.auto import tqdm

from ingest.chunking import SPECIAL_TOKENS, Chunk, Chunker
from ingest.journal import Journal
from ingest.loaders import Article
from ingest.report import IngestReport
from ingest.sentence_vectors import pool_sentence_vectors
from rag.core.sentences import sentence_spans
from rag.core.settings import Settings
from rag.core.types import article_meta
from rag.index.embedder import TokenVectors
from rag.index.store import ArticleRecord, ChunkRecord, Store, now_iso

log = logging.getLogger(__name__)

TITLE_CHARS = 200  # the title is embedded with every chunk; longer titles are cut
TITLE_TOKEN_BUDGET = 64


@dataclass
class Work:
    """An article to embed and commit under ``article_id`` (replacing a stored version when ``is_update``)."""

    article_id: str
    article: Article
    root: str
    is_update: bool


Group = list[tuple[Work, list[Chunk]]]


@dataclass
class EmbeddedGroup:
    """A group of articles whose chunks are encoded and not yet written (under the pending record
    ``pending_id``); ``embeddings[i]`` and ``tokens_of[i]`` belong to ``chunks[i]``."""

    pending_id: str
    group: Group
    chunks: list[ChunkRecord]
    embeddings: list[list[float]]
    tokens_of: list[TokenVectors]


def embed_text(title: str, text: str) -> str:
    """What the encoder sees for a chunk: its article's title line, then the chunk."""
    return f"{title}\n{text}" if title else text


def article_record(
    article_id: str, article: Article, root: str, chunks: int, duplicate_of: str = "",
    sentences: Optional[list[tuple[int, int, int]]] = None,
) -> ArticleRecord:
    """The record committing ``article`` under ``article_id`` (with its text), ingested now."""
    return ArticleRecord(
        article_id=article_id, chunks=chunks, ingested_at=now_iso(), root=root, duplicate_of=duplicate_of,
        sentences=sentences or [], text=article.text, **article_meta(article),
    )


class GroupWriter:
    """Cuts articles into chunks, embeds them group by group and writes each group under a journal batch."""

    def __init__(self, store: Store, settings: Settings, journal: Journal):
        self.store = store
        self.embedder = store.embedder
        self.journal = journal
        self.group_chunks = settings.ingest_group_chunks
        budget = self.embedder.max_seq_length - SPECIAL_TOKENS - TITLE_TOKEN_BUDGET
        self.chunk_tokens = min(settings.chunk_tokens, budget)
        if self.chunk_tokens < settings.chunk_tokens:
            log.warning(
                "chunk_tokens=%d exceeds what %s can embed with the title; using %d",
                settings.chunk_tokens, self.embedder.name, self.chunk_tokens,
            )
        self.chunker = Chunker(
            tokenize=self.embedder.tokenize, chunk_tokens=self.chunk_tokens, chunk_overlap=settings.chunk_overlap
        )

    def write(self, work: list[Work], report: IngestReport, progress: bool) -> None:
        """Embed and commit ``work``, group by group; a failure stops the run with groups before it committed."""
        if not work:
            return
        groups = self._groups(work)
        bar = tqdm(total=sum(len(chunks) for g in groups for _, chunks in g), desc="embedding", unit="chunk",
                   disable=not progress)
        # Group k is written to Chroma (and its sentence vectors pooled) by one writer thread while group k+1 is
        # encoded: the encoder's matrix work releases the GIL, so the writes do not add to the run's time.
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
                            self.journal.end(embedded.pending_id)  # nothing of this group was written
                            raise
                    writing = writer.submit(self._write_group, embedded, report, bar)
                if writing is not None:
                    writing.result()
                    writing = None
            finally:
                if writing is not None:  # the encoder failed: let the group being written finish
                    wait([writing])
                bar.close()

    def _groups(self, work: list[Work]) -> list[Group]:
        """``work`` cut into chunks and gathered, in order, into groups of at least ``group_chunks`` chunks
        (the last may hold fewer)."""
        groups: list[Group] = [[]]
        size = 0
        for w in work:
            if size >= self.group_chunks:
                groups.append([])
                size = 0
            chunks = self.chunker(w.article.text, w.article.page_starts or None)
            groups[-1].append((w, chunks))
            size += len(chunks)
        return groups

    def _embed_group(self, group: Group, report: IngestReport) -> EmbeddedGroup:
        """Step 1 of the write order (the pending record), then the chunks' vectors and token vectors."""
        pending_id = self.journal.begin([w.article_id for w, _ in group])
        try:
            return self._embed_chunks(pending_id, group, report)
        except BaseException:
            self.journal.end(pending_id)  # nothing of this group was written
            raise

    def _embed_chunks(self, pending_id: str, group: Group, report: IngestReport) -> EmbeddedGroup:
        """The group's chunk records with their vectors and token vectors."""
        records: list[ChunkRecord] = []
        for w, chunks in group:
            title = self.fit_title(w.article.title)
            records += [
                ChunkRecord(article_id=w.article_id, sha256=w.article.sha256, index=c.index, text=c.text,
                            start=c.start, end=c.end, title=title, source=w.article.source, page=c.page)
                for c in chunks
            ]
        # Sorting by length keeps padding low inside each encoder batch.
        order = sorted(range(len(records)), key=lambda i: len(records[i].text) + len(records[i].title))
        t0 = time.perf_counter()
        vectors, token_vectors = self.embedder.embed_texts_with_tokens(
            [embed_text(records[i].title, records[i].text) for i in order]
        )
        report.embed_seconds += time.perf_counter() - t0
        report.tokens_embedded += sum(len(tokens.spans) for tokens in token_vectors)
        embeddings: list = [None] * len(records)
        tokens_of: list = [None] * len(records)
        for i, vector, tokens in zip(order, vectors, token_vectors):
            embeddings[i], tokens_of[i] = vector, tokens
        return EmbeddedGroup(pending_id, group, records, embeddings, tokens_of)

    def _write_group(self, embedded: EmbeddedGroup, report: IngestReport, bar) -> None:
        """Steps 2 to 4 of the write order for one embedded group: chunks, sentence vectors, the records
        (the commit point), then the articles' older versions and the pending record."""
        try:
            self._write_chunks(embedded, report)
        except BaseException:
            self.journal.abandon(embedded.pending_id)  # what was written stays under the pending record, for repair
            raise
        self.journal.end(embedded.pending_id)
        report.chunks_written += len(embedded.chunks)
        bar.update(len(embedded.chunks))

    def _write_chunks(self, embedded: EmbeddedGroup, report: IngestReport) -> None:
        """Chunks, then sentence vectors (before the commit point too: a committed article always has them), then
        the article records; last, the chunks of the articles' replaced versions."""
        self.store.add_chunks(embedded.chunks, embedded.embeddings)
        position, records, sentence_rows = 0, [], []
        for w, chunks in embedded.group:
            mine = slice(position, position + len(chunks))
            position += len(chunks)
            sentences, rows = self._sentence_vectors(w, chunks, embedded.chunks[mine], embedded.tokens_of[mine])
            sentence_rows += rows
            report.sentences_written += sum(len(found) for *_, found in rows)
            records.append(article_record(w.article_id, w.article, w.root, len(chunks), sentences=sentences))
        self.store.put_sentences(sentence_rows)
        self.store.put_articles(records)
        for w, _ in embedded.group:
            if w.is_update:
                self.store.delete_chunks_of(w.article_id, keep_sha=w.article.sha256)
                report.updated.append(w.article_id)
            else:
                report.added.append(w.article_id)

    @staticmethod
    def _sentence_vectors(
        w: Work, chunks: list[Chunk], records: list[ChunkRecord], tokens: list[TokenVectors]
    ) -> tuple[list[tuple[int, int, int]], list[tuple]]:
        """The article's sentences as (start, end, chunk) for its record, and its rows for ``Store.put_sentences``:
        (article id, content hash, chunk index, [(sentence start, vector)]) for every chunk holding vectors."""
        prefix_chars = [len(embed_text(r.title, r.text)) - len(r.text) for r in records]
        sentences = pool_sentence_vectors(sentence_spans(w.article.text), chunks, tokens, prefix_chars)
        by_chunk: dict[int, list] = {}
        for start, _, chunk, vector in sentences:
            if vector is not None:
                by_chunk.setdefault(chunk, []).append((start, vector))
        rows = [(w.article_id, w.article.sha256, n, found) for n, found in sorted(by_chunk.items())]
        return [(a, b, c) for a, b, c, _ in sentences], rows

    def fit_title(self, title: str) -> str:
        """The title as embedded with every chunk: at most TITLE_CHARS characters and TITLE_TOKEN_BUDGET tokens."""
        title = title[:TITLE_CHARS]
        if len(self.embedder.tokenize(title)) <= TITLE_TOKEN_BUDGET:
            return title
        try:  # fast tokenizers give each token's character span: cut after the last token that fits
            encoded = self.embedder.tokenizer(title, add_special_tokens=False, return_offsets_mapping=True)
            spans = encoded["offset_mapping"]
            return title[: spans[TITLE_TOKEN_BUDGET - 1][1]].rstrip()
        except (NotImplementedError, KeyError, IndexError, TypeError):
            while title and len(self.embedder.tokenize(title)) > TITLE_TOKEN_BUDGET:  # a tenth shorter at a time
                title = title[: len(title) * 9 // 10].rstrip()
            return title
