"""Shared by the ingestion tests: files to ingest (text, PDFs, HTML pages, variants of the test corpus) and
:func:`check_index`, the invariants of a consistent index that every test that writes asserts.
"""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path

from ingest import Ingestor
from ingest.writer import embed_text
from rag.core.sentences import sentence_spans
from rag.index.store import ChunkRecord, Store, chunk_id


def paragraph(topic: str, n: int, start: int = 0) -> str:
    """``n`` distinct sentences about ``topic`` (distinct so every chunk is unique text)."""
    return " ".join(
        f"Sentence {i} of the {topic} story records that the {topic} committee met for the {i}th time "
        f"and approved item {i * 7 + 3} after a long debate." for i in range(start, start + n)
    )


def write(path: Path, content: str | bytes) -> Path:
    """Write ``content`` (text as UTF-8, or bytes) to ``path``, making its folders; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def ingestor_for(store: Store) -> Ingestor:
    """An Ingestor writing to ``store`` with the store's own settings."""
    return Ingestor(store)


def chunks_by_article(store: Store) -> dict[str, list[ChunkRecord]]:
    """article id -> its committed chunks, sorted by chunk index."""
    out: dict[str, list[ChunkRecord]] = defaultdict(list)
    for chunk in store.committed_chunks():
        out[chunk.article_id].append(chunk)
    for rows in out.values():
        rows.sort(key=lambda c: c.index)
    return dict(out)


def article_texts(store: Store) -> dict[str, str]:
    """article id -> its stored text, for every stored article."""
    records = store.get_articles([r.article_id for r in store.all_articles()], with_text=True)
    return {article_id: record.text for article_id, record in records.items()}


def pending_ids(store: Store) -> list[str]:
    """The ids of the pending (open) write batches in ``store``."""
    return [batch.pending_id for batch in store.pending_batches()]


def snapshot(store: Store, ids: list[str]) -> dict:
    """Everything stored about ``ids``: records (with text) and chunks."""
    records = store.get_articles(ids, with_text=True)
    chunks = chunks_by_article(store)
    return {i: (records.get(i), chunks.get(i)) for i in ids}


def check_index(store: Store, embedder) -> dict:
    """Assert every invariant of a consistent index; returns {article id: record}."""
    records = {r.article_id: r for r in store.all_articles()}
    texts = article_texts(store)
    chunks = chunks_by_article(store)
    all_ids = [c.chunk_id for rows in chunks.values() for c in rows]
    # Committed chunks are a subset of the stored ones: equal counts mean no chunk is left uncommitted, of no
    # article record, of a duplicate or of an older version.
    assert len(all_ids) == len(set(all_ids)), "duplicate chunk ids"
    assert len(all_ids) == store.chunk_count(), f"{store.chunk_count() - len(all_ids)} chunks are not committed"

    pending = pending_ids(store)
    assert pending == [], f"pending batches left behind: {pending}"

    for article_id, rows in chunks.items():
        record = records[article_id]
        assert [c.index for c in rows] == list(range(len(rows))), f"{article_id}: chunk indexes"
        assert record.chunks == len(rows), f"{article_id}: record says {record.chunks} chunks, {len(rows)} stored"
        stored_ids = store.chunk_ids(article_id)
        assert sorted(stored_ids) == sorted(chunk_id(article_id, record.sha256, c.index) for c in rows)

    token_texts = []
    for article_id, record in records.items():
        rows = chunks.get(article_id, [])
        if record.duplicate_of:
            assert rows == [] and record.chunks == 0
            canonical = records.get(record.duplicate_of)
            assert canonical is not None and not canonical.duplicate_of, f"{article_id}: bad duplicate_of"
            assert canonical.sha256 == record.sha256
            continue
        assert rows, f"{article_id} has no chunks"
        text = texts[article_id]
        covered = bytearray(len(text))
        for chunk in rows:
            start, end = chunk.start, chunk.end
            assert text[start:end] == chunk.text, f"{chunk.chunk_id}: span [{start}:{end}] does not match its text"
            covered[start:end] = b"\x01" * (end - start)
            token_texts.append(embed_text(chunk.title, chunk.text))
        missed = [i for i, ch in enumerate(text) if not covered[i] and not ch.isspace()]
        assert not missed, f"{article_id}: text at {missed[:5]}... is in no chunk"

    if token_texts:
        lengths = [len(ids) for ids in embedder.tokenizer(token_texts, add_special_tokens=True)["input_ids"]]
        assert max(lengths) <= embedder.max_seq_length, f"a chunk has {max(lengths)} tokens"
    check_sentence_vectors(store, records, chunks, texts)
    return records


def check_sentence_vectors(store: Store, records: dict, chunks: dict[str, list[ChunkRecord]], texts: dict) -> None:
    """A vector for every sentence of every stored article, under its current hash, in the chunk named by the
    record; and no sentence vectors of anything else."""
    found = 0
    for article_id, record in records.items():
        record_ids = store.sentence_record_ids(article_id)
        found += len(record_ids)
        if record.duplicate_of:
            assert record_ids == [], f"duplicate {article_id} has sentence vectors"
            continue
        current = {c.chunk_id: c.index for c in chunks[article_id]}
        assert set(record_ids) <= set(current), f"{article_id}: sentence vectors of an old version"
        stored = {(start, current[i]) for i in record_ids for (_, start) in store.sentence_vectors([i])}
        spans = sentence_spans(texts[article_id])
        assert [(a, b) for a, b, _ in record.sentences] == spans, f"{article_id}: stored sentence spans"
        assert stored == {(a, chunk) for a, _, chunk in record.sentences}, f"{article_id}: vectors"
    # No named method lists every record: count them to find those of no stored article.
    assert store._sentences.count() == found, "sentence vectors of no stored article"


def dense_search(store: Store, embedder, query: str, k: int = 3) -> list[ChunkRecord]:
    """The ``k`` committed chunks nearest ``query``, nearest first."""
    by_id = {c.chunk_id: c for c in store.committed_chunks()}
    hits = store.dense_query(embedder.embed_query(query), min(k, store.chunk_count()))
    return [by_id[i] for i, _ in hits]


def reasons(report) -> dict[str, str]:
    """File name -> the reason it was skipped, for every file an ingest report skipped."""
    return {Path(s.path).name: s.reason for s in report.skipped}


def pdf_bytes(pages: list[list[str]], *, title: str = "", author: str = "", encrypt=None) -> bytes:
    """A PDF with one page per item of ``pages`` (its lines of text); title, author and encryption when given."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4, encrypt=encrypt)
    if title:
        c.setTitle(title)
    if author:
        c.setAuthor(author)
    for lines in pages:
        y = 800
        for line in lines:
            c.drawString(40, y, line)
            y -= 15
        c.showPage()
    c.save()
    return buf.getvalue()


NEWS_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Harbour bridge reopens after repairs | Coastal Times</title>
<meta name="author" content="Jane Doe">
<meta property="article:published_time" content="2024-03-05T08:00:00Z">
<meta name="description" content="The harbour bridge reopened on Tuesday.">
<link rel="canonical" href="https://news.example.com/2024/03/harbour-bridge-reopens">
</head><body>
<header><nav><ul><li><a href="/">Home</a></li><li><a href="/world">World</a></li>
<li><a href="/sport">Sport</a></li><li><a href="/weather">Weather forecast</a></li></ul></nav></header>
<div class="share"><a href="https://twitter.com/share">Share on Twitter</a>
<a href="https://facebook.com/share">Share on Facebook</a></div>
<main><article>
<h1>Harbour bridge reopens after repairs</h1>
<p>The harbour bridge reopened to traffic on Tuesday morning after eighteen months of structural repairs that
cost the city council 42 million pounds, officials said.</p>
<p>Engineers replaced the corroded steel cables and resurfaced the entire deck. The work was delayed twice by
winter storms, which flooded the construction yard and damaged two cranes.</p>
<p>Commuters who had faced a forty-minute detour through the industrial estate welcomed the reopening. "It has
given me an hour of my day back," said Maria Lopez, a nurse who crosses the bridge every morning.</p>
<p>The council said a cycle lane would open on the eastern side of the bridge in the summer, once the remaining
safety barriers have been installed.</p>
</article></main>
<aside class="related"><h3>Related stories</h3><ul><li><a href="/a">Council budget approved</a></li>
<li><a href="/b">Storm damage across the coast</a></li></ul></aside>
<footer><p>Copyright 2024 Coastal Times Media Group. All rights reserved.</p>
<a href="/privacy">Privacy policy</a> <a href="/cookies">Cookie settings</a></footer>
</body></html>"""

# A page of a client-side app: navigation, share links and a footer, but no article in the HTML.
NO_MAIN_TEXT_HTML = """<!DOCTYPE html><html><head><title>Coastal Times - Home</title></head><body>
<header><nav><ul><li><a href="/">Home</a></li><li><a href="/world">World</a></li>
<li><a href="/sport">Sport</a></li></ul></nav></header>
<div class="share"><a href="https://twitter.com/share">Share on Twitter</a>
<a href="https://facebook.com/share">Share on Facebook</a></div>
<div id="app"></div><script>window.__DATA__ = {"story": "loading"}; renderApp();</script>
<footer><p>Copyright 2024 Coastal Times Media Group. All rights reserved.</p><a href="/privacy">Privacy policy</a>
</footer></body></html>"""


def corpus_variants(corpus: Path, dest: Path, copies: int, categories: tuple[str, ...] = ()) -> list[Path]:
    """``copies`` distinct variants of each text and Markdown article of the test corpus (of ``categories``, or
    all), written as ``dest/<category>/<name>-<n><suffix>``: the same story with a closing line naming the copy.

    For tests that need more files than the corpus holds (a kill or a server stop must land mid-run). The
    variants of the byte-identical pair stay identical to each other, and the cp1252 file stays cp1252.
    """
    files = []
    for source in sorted(corpus.glob("*/*")):
        if source.suffix not in (".txt", ".md") or (categories and source.parent.name not in categories):
            continue
        data = source.read_bytes().rstrip(b"\n")
        for n in range(copies):
            files.append(write(dest / source.parent.name / f"{source.stem}-{n}{source.suffix}",
                               data + f"\n\nFiled for edition {n + 1}.\n".encode("ascii")))
    return files
