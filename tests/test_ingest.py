"""Ingestion end to end with real components: files on disk, the real embedding model, Chroma on disk.

No mocks. Every test that writes checks the index invariants (:func:`check_index`): one chunk set per
article, every chunk committed under its article's content hash, exact spans, chunks that fit the encoder.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from ingest import Ingestor, delete_article
from ingest.journal import PENDING_PREFIX
from ingest.writer import embed_text
from rag.core.sentences import sentence_spans
from rag.index.store import ChunkRecord, PendingBatch, Store, chunk_id

# --- helpers --------------------------------------------------------------------------------------------------


def paragraph(topic: str, n: int, start: int = 0) -> str:
    """``n`` distinct sentences about ``topic`` (distinct so every chunk is unique text)."""
    return " ".join(
        f"Sentence {i} of the {topic} story records that the {topic} committee met for the {i}th time "
        f"and approved item {i * 7 + 3} after a long debate." for i in range(start, start + n)
    )


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def ingestor_for(store: Store) -> Ingestor:
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
    records = store.get_articles([r.article_id for r in store.all_articles()], with_text=True)
    return {article_id: record.text for article_id, record in records.items()}


def pending_ids(store: Store) -> list[str]:
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
    return {Path(s.path).name: s.reason for s in report.skipped}


def pdf_bytes(pages: list[list[str]], *, title: str = "", author: str = "", encrypt=None) -> bytes:
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


# --- pure parts: discovery, the journal's staleness rule, orphaned duplicates ----------------------------------


def test_discover_lists_supported_files_once_and_reports_the_rest(tmp_path):
    from ingest.discovery import article_id_for, discover, folder_roots

    src = tmp_path / "src"
    for name in ("a.txt", "sub/b.md", "sub/deeper/c.HTML", ".hidden/d.txt", ".e.txt", "f.pptx", "noext",
                 "manifest.jsonl", "sub/manifest.jsonl", "meta.jsonl"):
        write(src / name, "x")
    single = write(tmp_path / "single.pdf", b"%PDF")
    found, skipped = discover([src, src / "a.txt", single, single, tmp_path / "missing"],
                              exclude={(src / "meta.jsonl").resolve()})
    assert [(file.relative_to(root).as_posix(), root) for file, root in found] == [
        ("a.txt", src), ("sub/b.md", src), ("sub/deeper/c.HTML", src), ("single.pdf", tmp_path),
    ]  # a file given by itself is rooted at its own folder; one reached twice is listed once
    # Manifests in the folders and the one given for the run (``exclude``) are neither articles nor skipped.
    assert [(Path(s.path).name, s.reason) for s in skipped] == [
        ("f.pptx", "unsupported file type .pptx"), ("noext", "unsupported file type (none)"),
        ("missing", "path does not exist"),
    ]
    assert article_id_for(src / "sub" / "b.md", src) == "sub/b.md"
    assert folder_roots([src, single, tmp_path / "missing"]) == {str(src)}


def test_pending_batch_is_stale_only_when_its_writer_is_gone():
    from ingest.journal import STALE_PENDING_SECONDS, batch_is_stale, process_started

    now = 1_000_000.0

    def stale(host: str, pid: int, age: float, in_flight=(), failed=(), started=0) -> bool:
        batch = PendingBatch("pending:1", ["x.txt"], host, pid, now - age, started)
        return batch_is_stale(batch, host="here", in_flight=set(in_flight), failed=set(failed), now=now)

    old = STALE_PENDING_SECONDS + 1
    assert not stale("elsewhere", os.getpid(), 10) and stale("elsewhere", os.getpid(), old)  # only age counts
    assert not stale("here", os.getppid(), 10) and stale("here", os.getppid(), old)  # a live process of this host
    # This process: its own writes are judged by what it knows of them, whatever their age.
    assert not stale("here", os.getpid(), old, in_flight={"pending:1"})
    assert stale("here", os.getpid(), 10, failed={"pending:1"})
    # Of this process but not this journal's (another Ingestor in this process): by age.
    me, parent = process_started(os.getpid()), process_started(os.getppid())
    assert not stale("here", os.getpid(), 10, started=me) and stale("here", os.getpid(), old, started=me)
    # A pid now held by a process that started later than the writer (a restarted container, pid reuse):
    # the writer is gone, however young the batch.
    assert stale("here", os.getpid(), 10, started=me - 1) and stale("here", os.getppid(), 10, started=parent - 1)
    assert not stale("here", os.getppid(), 10, started=parent)


def test_orphaned_duplicates_are_those_whose_stored_copy_is_gone_changed_or_a_copy():
    from ingest.ingestor import orphaned_duplicates
    from rag.index.store import ArticleRecord

    def record(article_id: str, sha: str, duplicate_of: str = "") -> ArticleRecord:
        return ArticleRecord(article_id=article_id, title="t", source="s", sha256=sha, chunks=0, ingested_at="",
                             duplicate_of=duplicate_of)

    records = {r.article_id: r for r in [
        record("a", "1"), record("b", "1", "a"),  # a stored copy: fine
        record("c", "2", "gone"),  # its copy was deleted
        record("d", "3"), record("e", "4", "d"),  # its copy changed
        record("f", "5", "g"), record("g", "5", "h"),  # its copy is itself a duplicate (of a deleted one)
    ]}
    orphans = orphaned_duplicates(records)
    assert {sha: sorted(r.article_id for r in rs) for sha, rs in orphans.items()} == {
        "2": ["c"], "4": ["e"], "5": ["f", "g"],
    }


# --- formats ---------------------------------------------------------------------------------------------------


def test_txt_and_markdown_titles_and_spans(store, embedder, tmp_path):
    src = tmp_path / "src"
    write(src / "plain.txt", "Grain prices climb\n\n" + paragraph("grain", 30))
    write(src / "notes" / "story.md", "# Copper mine strike ends\n\n" + paragraph("copper", 12) + "\n\n## Reaction\n\n"
          + paragraph("union", 5))
    report = ingestor_for(store).ingest([src], progress=False)
    assert sorted(report.added) == ["notes/story.md", "plain.txt"]
    assert report.skipped == [] and report.warnings == []
    records = check_index(store, embedder)
    assert records["plain.txt"].title == "Grain prices climb"
    assert records["plain.txt"].format == "txt"
    assert records["notes/story.md"].title == "Copper mine strike ends"
    assert records["notes/story.md"].format == "md"
    assert records["plain.txt"].chunks > 1  # long enough to be split
    assert report.chunks_written == sum(r.chunks for r in records.values())
    assert report.tokens_embedded > 0 and report.embed_seconds > 0
    assert records["plain.txt"].source == str((src / "plain.txt").resolve())
    # The title is embedded with every chunk and stored with it.
    chunks = chunks_by_article(store)
    assert {c.title for c in chunks["notes/story.md"]} == {"Copper mine strike ends"}


def test_sentence_vectors_are_pooled_from_the_chunk_encoding(store, embedder, tmp_path):
    import numpy as np

    sentences = [
        "The city council approved a new budget for road repairs on Tuesday.",
        "Rovers beat United 3-1 in the cup final, with two late goals from their captain.",
        "Shares in the chip maker rose 12% after it reported record quarterly profits.",
        "Heavy snow closed schools across the north of the region for a second day.",
    ]
    write(tmp_path / "src" / "mixed.txt", "Local news round-up\n\n" + " ".join(sentences))
    ingestor_for(store).ingest([tmp_path / "src"], progress=False)
    record = check_index(store, embedder)["mixed.txt"]
    text = store.get_articles(["mixed.txt"], with_text=True)["mixed.txt"].text
    spans = {text[a:b]: a for a, b in sentence_spans(text)}
    holder = {start: chunk for start, _, chunk in record.sentences}
    vectors = store.sentence_vectors([chunk_id("mixed.txt", record.sha256, holder[spans[s]]) for s in sentences])
    assert all(("mixed.txt", spans[s]) in vectors for s in sentences)

    # Meaning: each question is closest to the sentence that answers it.
    for question, expected in [("Who won the cup final?", 1), ("How much did the chip maker's shares rise?", 2),
                               ("Why were schools closed?", 3)]:
        q = np.asarray(embedder.embed_query(question))
        sims = [float(np.dot(vectors[("mixed.txt", spans[s])], q)) for s in sentences]
        assert int(np.argmax(sims)) == expected, (question, sims)

    # Exactly the mean of the chunk's token vectors over the sentence's tokens, from a fresh encoding.
    first = chunks_by_article(store)["mixed.txt"][0]
    embedded = embed_text(first.title, first.text)
    _, tokens = embedder.embed_texts_with_tokens([embedded])
    shift = len(embedded) - len(first.text) - first.start
    start = spans[sentences[2]]
    again = tokens[0].pool(start + shift, start + len(sentences[2]) + shift)
    assert np.allclose(again, vectors[("mixed.txt", start)], atol=2e-3)  # stored as float16


def test_html_main_text_and_metadata(store, embedder, tmp_path):
    write(tmp_path / "src" / "bridge.html", NEWS_HTML)
    report = ingestor_for(store).ingest([tmp_path / "src"], progress=False)
    assert report.added == ["bridge.html"]
    records = check_index(store, embedder)
    record = records["bridge.html"]
    assert record.title == "Harbour bridge reopens after repairs"
    assert record.author == "Jane Doe"
    assert record.published == "2024-03-05"
    assert record.url == "https://news.example.com/2024/03/harbour-bridge-reopens"
    assert record.format == "html"
    text = article_texts(store)["bridge.html"]
    for kept in ("eighteen months of structural repairs", "corroded steel cables", "Maria Lopez",
                 "cycle lane would open"):
        assert kept in text
    for dropped in ("Share on Twitter", "Share on Facebook", "Weather forecast", "Privacy policy",
                    "Cookie settings", "Copyright 2024", "Related stories", "Council budget approved"):
        assert dropped not in text
    hits = dense_search(store, embedder, "Why was the bridge repair delayed?")
    assert hits[0].article_id == "bridge.html"


def test_pdf_pages_and_metadata(store, embedder, tmp_path):
    page1 = [f"Line {i}: the grain harvest in the northern valley was the largest since records began {i}."
             for i in range(25)]
    page2 = [f"Line {i}: striking copper miners in the southern hills returned to work on day {i}."
             for i in range(25)]
    write(tmp_path / "src" / "report.pdf", pdf_bytes([page1, page2], title="Regional economy", author="Sam Writer"))
    report = ingestor_for(store).ingest([tmp_path / "src"], progress=False)
    assert report.added == ["report.pdf"], report.skipped
    records = check_index(store, embedder)
    record = records["report.pdf"]
    assert record.title == "Regional economy" and record.author == "Sam Writer" and record.format == "pdf"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", record.published), record.published
    text = article_texts(store)["report.pdf"]
    assert len(record.page_starts) == 2 and record.page_starts[0] == 0
    second = record.page_starts[1]
    assert text[:second].count("northern valley") == 25 and "southern hills" not in text[:second]
    assert text[second:].count("southern hills") == 25
    chunks = chunks_by_article(store)["report.pdf"]
    pages = [c.page for c in chunks]
    assert set(pages) == {1, 2} and pages == sorted(pages)
    for chunk in chunks:
        assert chunk.page == (2 if chunk.start >= second else 1)
        if "northern valley" not in chunk.text:  # only page-2 text: must be labelled page 2
            assert chunk.page == 2


def test_non_utf8_text_is_decoded_with_a_warning_naming_the_file(store, embedder, tmp_path):
    body = ("Cafe owners in Paris said the naïve plan to charge £3 for a café crème would fail, "
            "according to the señor who runs the bistro. " + paragraph("bistro", 6))
    path = write(tmp_path / "src" / "legacy.txt", ("Prices rise at the café\n\n" + body).encode("cp1252"))
    report = ingestor_for(store).ingest([tmp_path / "src"], progress=False)
    assert report.added == ["legacy.txt"]
    assert len(report.warnings) == 1 and str(path.resolve()) in report.warnings[0], report.warnings
    assert "UTF-8" in report.warnings[0]
    check_index(store, embedder)
    record = store.get_articles(["legacy.txt"], with_text=True)["legacy.txt"]
    assert record.title == "Prices rise at the café"
    assert "naïve plan to charge £3 for a café crème" in record.text and "señor" in record.text


@pytest.mark.heavy
def test_article_with_more_chunks_than_one_chroma_batch(settings_factory, store_factory, embedder, tmp_path):
    """A long article is written in batches Chroma accepts (a 9 MB one-line file once failed here)."""
    store = store_factory(settings_factory("small-chunks", chunk_tokens=16, chunk_overlap=0))
    limit = store._client.get_max_batch_size()  # Chroma's own limit (Store writes in batches of at most this)
    words = " ".join(f"w{i % 997}" for i in range(limit * 8))  # about 8 words (16 word pieces) a chunk
    write(tmp_path / "src" / "long.txt", "A very long article\n\n" + words)
    report = ingestor_for(store).ingest([tmp_path / "src"], progress=False)
    assert report.added == ["long.txt"] and report.chunks_written > limit
    records = check_index(store, embedder)
    assert records["long.txt"].chunks == report.chunks_written


def test_long_title_and_repeated_text_fit_the_encoder(store, embedder, tmp_path):
    """A title of hundreds of tokens is cut to fit; repeated passages still get exact, covering spans."""
    cjk_title = "".join(chr(0x4E00 + (i * 37) % 20000) for i in range(250))  # one token per character
    write(tmp_path / "src" / "cjk.md", f"# {cjk_title}\n\n" + paragraph("river", 8))
    numbers = " ".join(str(10**8 + i * 7919) for i in range(60))
    write(tmp_path / "src" / "repeated.txt", numbers + "\n\n" + "The same line again. " * 150 + "\n\nThe end.")
    report = ingestor_for(store).ingest([tmp_path / "src"], progress=False)
    assert sorted(report.added) == ["cjk.md", "repeated.txt"]
    check_index(store, embedder)  # token limit and full coverage are part of the invariants


# --- the test corpus ------------------------------------------------------------------------------------------

DUP_PAIR = ("politics/kestrel-velodrome-funding.txt", "sport/kestrel-velodrome.txt")  # byte-identical: stored, copy
CP1252_ID = "business/pennant-brewery-pint-price.txt"
HTML_ID = "tech/lumenar-chip-plant.html"
PDF_ID = "business/northfield-rail-annual-review.pdf"
MD_ID = "business/orla-coffee-expansion.md"


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


@pytest.fixture(scope="module")
def news_sample(tmp_path_factory, embedder, test_corpus, settings_at):
    """The whole test corpus (every format, a duplicate pair, a cp1252 file) copied to tmp and ingested once."""
    root = tmp_path_factory.mktemp("news")
    src = root / "src"
    shutil.copytree(test_corpus, src)
    files = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
    store = Store(settings_at(root / "data"), embedder)
    report = Ingestor(store).ingest([src], progress=False)
    # Every byte-identical copy in the corpus (at least the known pair): (copy, first in id order).
    by_sha: dict[str, list[str]] = defaultdict(list)
    for rel in files:
        by_sha[hashlib.sha256((src / rel).read_bytes()).hexdigest()].append(rel)
    duplicates = sorted((rel, same[0]) for same in by_sha.values() for rel in same[1:])
    return {"store": store, "src": src, "report": report, "files": files, "duplicates": duplicates}


def test_news_sample_ingests_every_format_with_duplicates_and_legacy_encoding(news_sample, embedder):
    store, report, files = news_sample["store"], news_sample["report"], news_sample["files"]
    stored, copy = DUP_PAIR
    assert 25 <= len(files) <= 40
    assert report.seen == len(files) and report.skipped == []
    assert report.duplicates == news_sample["duplicates"] == [(copy, stored)]
    assert sorted(report.added) == sorted(set(files) - {copy})
    records = check_index(store, embedder)
    assert sorted(records) == files
    assert records[copy].duplicate_of == stored and records[copy].chunks == 0
    assert records[stored].chunks > 0 and not records[stored].duplicate_of
    assert {r.format for r in records.values()} == {"txt", "md", "html", "pdf"}
    # The near-duplicate match reports are two articles, not a duplicate.
    near = ("sport/ashcombe-rovers-cup-final.txt", "sport/ashcombe-asante-double-lifts-cup.txt")
    assert all(records[a].chunks > 0 and not records[a].duplicate_of for a in near)
    assert records[near[0]].sha256 != records[near[1]].sha256
    # The cp1252 file: one warning, naming it; the pound signs and curly quotes survive.
    assert len(report.warnings) == 1 and str(news_sample["src"] / CP1252_ID) in report.warnings[0]
    assert "cp1252" in report.warnings[0]
    legacy = store.get_articles([CP1252_ID], with_text=True)[CP1252_ID]
    assert legacy.title == "Pennant Brewery raises price of a pint to £4.85"
    assert "to £4.85 from £4.60 on 1 October" in legacy.text
    assert "\u201cWe have held our prices" in legacy.text and "we won\u2019t do that.\u201d" in legacy.text
    # HTML: the title without the site's suffix, the page's metadata, the article's text and none of the page's.
    html = store.get_articles([HTML_ID], with_text=True)[HTML_ID]
    assert html.title == "Lumenar to build £840m chip plant in Bryndale" and html.author == "Siân Howell"
    assert html.published == "2024-05-14" and html.url.endswith("/2024/05/lumenar-bryndale-chip-plant")
    assert html.site == "valleybusinesspost.example"  # no og:site_name: trafilatura names the site by its host
    assert "creating 1,200 jobs" in html.text and "Bryndale College" in html.text
    for dropped in ("Jobs board", "Subscribe today", "Share this story", "Email a friend", "Most read",
                    "Rugby club", "Privacy notice", "Manage cookies", "All rights reserved"):
        assert dropped not in html.text
    # PDF: two pages, each chunk labelled with its page.
    pdf = store.get_articles([PDF_ID], with_text=True)[PDF_ID]
    assert pdf.title == "Northfield Rail annual review 2024" and pdf.published == "2025-03-20"
    assert len(pdf.page_starts) == 2 and pdf.page_starts[0] == 0
    second = pdf.page_starts[1]
    assert "48.3 million passengers" in pdf.text[:second] and "32 new electric trains" in pdf.text[second:]
    assert {c.page for c in chunks_by_article(store)[PDF_ID]} == {1, 2}
    # Markdown: the heading is the title.
    assert records[MD_ID].title == "Orla Coffee to open 40 new cafes" and records[MD_ID].format == "md"
    assert report.chunks_written == store.chunk_count() == sum(r.chunks for r in records.values())
    assert report.tokens_embedded > report.chunks_written * 20


def test_news_rerun_unchanged_embeds_nothing(news_sample, embedder):
    store = news_sample["store"]
    version = store.version()
    report = Ingestor(store).ingest([news_sample["src"]], progress=False)
    assert report.chunks_written == 0 and report.tokens_embedded == 0
    assert report.unchanged == len(news_sample["files"])
    assert report.added == report.updated == report.pruned == [] and report.duplicates == []
    assert store.version() == version  # nothing changed, so retrievers keep their BM25 index
    assert report.seconds < 10


# --- updates, prune, delete, duplicates ---------------------------------------------------------------------------


def test_changed_article_replaces_its_chunks(store, embedder, tmp_path):
    src = tmp_path / "src"
    write(src / "a.txt", "Grain prices climb\n\n" + paragraph("grain", 20))
    write(src / "b.txt", "Copper strike\n\n" + paragraph("copper", 5))
    ingestor = ingestor_for(store)
    ingestor.ingest([src], progress=False)
    old = chunks_by_article(store)["a.txt"]
    old_sha = store.get_articles(["a.txt"])["a.txt"].sha256
    untouched = snapshot(store, ["b.txt"])

    new_text = ("Volcano erupts near fishing village\n\nLava from the volcano reached the harbour of the "
                "fishing village overnight, and the coastguard evacuated four hundred residents by boat.")
    write(src / "a.txt", new_text)
    report = ingestor.ingest([src], progress=False)
    assert report.updated == ["a.txt"] and report.added == [] and report.unchanged == 1
    records = check_index(store, embedder)
    assert records["a.txt"].sha256 != old_sha and records["a.txt"].title == "Volcano erupts near fishing village"
    remaining = {c.chunk_id for rows in chunks_by_article(store).values() for c in rows}
    assert not remaining & {c.chunk_id for c in old}, "old chunks survived the update"
    assert store.chunk_ids("a.txt", old_sha) == []
    hits = dense_search(store, embedder, "How were residents evacuated from the lava?")
    assert hits[0].article_id == "a.txt" and "coastguard evacuated" in hits[0].text
    assert snapshot(store, ["b.txt"]) == untouched


def test_prune_removes_deleted_files_only_with_prune(store, embedder, tmp_path):
    src = tmp_path / "src"
    for name, topic in (("a.txt", "grain"), ("b.txt", "copper"), ("sub/c.md", "river")):
        write(src / name, f"{topic.title()} news\n\n" + paragraph(topic, 4))
    ingestor = ingestor_for(store)
    ingestor.ingest([src], progress=False)
    (src / "b.txt").unlink()

    report = ingestor.ingest([src], progress=False)
    assert report.pruned == [] and "b.txt" in store.get_articles(["b.txt"])

    # A single file given with --prune must not prune its siblings.
    report = ingestor.ingest([src / "a.txt"], prune=True, progress=False)
    assert report.pruned == [] and "b.txt" in store.get_articles(["b.txt"])

    report = ingestor.ingest([src], prune=True, progress=False)
    assert report.pruned == ["b.txt"] and report.unchanged == 2
    assert "b.txt" not in store.get_articles(["b.txt"])
    assert store.chunk_ids("b.txt") == []
    assert sorted(check_index(store, embedder)) == ["a.txt", "sub/c.md"]


def test_delete_by_id(store, embedder, tmp_path, tmp_settings):
    src = tmp_path / "src"
    write(src / "a.txt", "Grain news\n\n" + paragraph("grain", 6))
    write(src / "b.txt", "Copper news\n\n" + paragraph("copper", 6))
    write(src / "c.txt", "River news\n\n" + paragraph("river", 6))
    ingestor = ingestor_for(store)
    ingestor.ingest([src], progress=False)
    version = store.version()

    assert ingestor.delete("a.txt") is True
    assert store.version() != version
    assert "a.txt" not in store.get_articles(["a.txt"])
    assert store.chunk_ids("a.txt") == []
    assert ingestor.delete("a.txt") is False
    assert ingestor.delete("no-such-article.txt") is False

    # The Python API function (opens its own ingestor on the same index).
    assert delete_article("b.txt", tmp_settings) is True
    assert delete_article("b.txt", tmp_settings) is False
    assert sorted(check_index(store, embedder)) == ["c.txt"]

    # A re-run adds the still-present files back.
    report = ingestor.ingest([src], progress=False)
    assert sorted(report.added) == ["a.txt", "b.txt"] and report.unchanged == 1
    check_index(store, embedder)


def test_duplicates_stored_once_and_promoted_when_canonical_goes(store, embedder, tmp_path):
    src = tmp_path / "src"
    text = "Harbour storm\n\n" + paragraph("storm", 10)
    write(src / "a.txt", text)
    write(src / "b.txt", text)
    write(src / "c.txt", text)
    write(src / "d.txt", "Other news\n\n" + paragraph("grain", 5))
    ingestor = ingestor_for(store)
    report = ingestor.ingest([src], progress=False)
    assert report.duplicates == [("b.txt", "a.txt"), ("c.txt", "a.txt")]
    assert sorted(report.added) == ["a.txt", "d.txt"]
    records = check_index(store, embedder)
    a_chunks = records["a.txt"].chunks
    assert records["b.txt"].duplicate_of == "a.txt" and records["c.txt"].duplicate_of == "a.txt"
    assert report.chunks_written == a_chunks + records["d.txt"].chunks  # the copies were not embedded

    # Re-run: duplicates are unchanged, not reported again.
    report = ingestor.ingest([src], progress=False)
    assert report.unchanged == 4 and report.duplicates == [] and report.chunks_written == 0

    # Deleting the canonical copy promotes the first duplicate; the other points at it.
    assert ingestor.delete("a.txt")
    records = check_index(store, embedder)
    assert not records["b.txt"].duplicate_of and records["b.txt"].chunks == a_chunks
    assert records["c.txt"].duplicate_of == "b.txt"
    hits = dense_search(store, embedder, "storm committee met")
    assert {c.article_id for c in hits} == {"b.txt"}

    # Changing the (new) canonical file's content promotes the remaining copy too.
    write(src / "b.txt", "Changed story\n\n" + paragraph("volcano", 4))
    (src / "a.txt").unlink()
    report = ingestor.ingest([src], prune=True, progress=False)
    assert sorted(report.updated) == ["b.txt", "c.txt"] and report.pruned == []
    records = check_index(store, embedder)
    assert not records["c.txt"].duplicate_of and records["c.txt"].chunks == a_chunks


# --- bad input ---------------------------------------------------------------------------------------------------


def test_bad_inputs_are_skipped_with_reasons_and_stored_articles_untouched(store, embedder, tmp_path):
    from reportlab.lib import pdfencrypt

    src = tmp_path / "src"
    write(src / "keep.txt", "Grain news\n\n" + paragraph("grain", 8))
    write(src / "keep2.md", "# Copper news\n\n" + paragraph("copper", 8))
    ingestor = ingestor_for(store)
    assert sorted(ingestor.ingest([src], progress=False).added) == ["keep.txt", "keep2.md"]
    before = snapshot(store, ["keep.txt", "keep2.md"])

    good_pdf = pdf_bytes([[f"Line {i} of a perfectly fine report." for i in range(30)]] * 2)
    write(src / "empty.txt", b"")
    write(src / "blank.md", "   \n\n\t\n")
    write(src / "binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 16)
    write(src / "nomain.html", NO_MAIN_TEXT_HTML)
    write(src / "encrypted.pdf", pdf_bytes([["Secret board minutes."] * 10],
                                           encrypt=pdfencrypt.StandardEncryption("secret", canPrint=0)))
    write(src / "broken.pdf", good_pdf[: len(good_pdf) // 2])
    with open(src / "huge.txt", "wb") as handle:  # 50 MB, sparse: instant to write
        handle.truncate(50_000_000)
    (src / "vanished.txt").symlink_to(tmp_path / "deleted-before-reading.txt")  # dangling: read fails
    write(src / "slides.pptx", b"PK\x03\x04 not supported")
    write(src / "keep2.md", bytes(range(256)) * 4)  # a stored article whose file went bad: kept as it was
    write(src / "new.txt", "Volcano news\n\nLava reached the harbour of the fishing village overnight.")
    missing = tmp_path / "no-such-folder"

    report = ingestor.ingest([src, missing], prune=True, progress=False)
    got = reasons(report)
    expected = {
        "empty.txt": "empty file", "blank.md": "empty file", "binary.txt": "binary content",
        "nomain.html": "no main text", "encrypted.pdf": "encrypted PDF", "broken.pdf": "broken PDF",
        "huge.txt": "file too large", "vanished.txt": "vanished", "slides.pptx": "unsupported file type",
        "keep2.md": "binary content", "no-such-folder": "path does not exist",
    }
    assert set(got) == set(expected), got
    for name, fragment in expected.items():
        assert fragment in got[name], (name, got[name])
    assert "50.0 MB > 10.0 MB" in got["huge.txt"]
    # The rest of the run completed: the good new file is in, the stored ones are untouched, nothing pruned.
    assert report.added == ["new.txt"] and report.unchanged == 1 and report.pruned == []
    assert snapshot(store, ["keep.txt", "keep2.md"]) == before
    assert sorted(check_index(store, embedder)) == ["keep.txt", "keep2.md", "new.txt"]
    hits = dense_search(store, embedder, "lava in the fishing village harbour", k=1)
    assert hits[0].article_id == "new.txt"


def test_explicit_missing_dangling_and_clashing_paths(store, embedder, tmp_path):
    good = write(tmp_path / "good.txt", "Grain news\n\n" + paragraph("grain", 3))
    dangling = tmp_path / "gone.txt"
    dangling.symlink_to(tmp_path / "never-existed.txt")
    first = write(tmp_path / "a" / "same.txt", "Copper news\n\n" + paragraph("copper", 3))
    second = write(tmp_path / "b" / "same.txt", "River news\n\n" + paragraph("river", 3))
    report = ingestor_for(store).ingest([tmp_path / "nope.txt", dangling, good, good, first, second], progress=False)
    assert report.added == ["good.txt", "same.txt"]  # good.txt given twice, ingested once
    got = {s.path: s.reason for s in report.skipped}
    assert got == {
        str(tmp_path / "nope.txt"): "path does not exist",
        str(dangling): "path does not exist",
        str(second.resolve()): "another file in this run has the article id 'same.txt'",
    }
    assert store.get_articles(["same.txt"])["same.txt"].source == str(first.resolve())
    check_index(store, embedder)


def test_same_id_from_another_folder_is_refused_not_overwritten(store, embedder, tmp_path):
    first = write(tmp_path / "a" / "x.txt", "Ship news\n\n" + paragraph("ship", 3))
    second = write(tmp_path / "b" / "x.txt", "Train news\n\n" + paragraph("train", 3))
    ingestor = ingestor_for(store)
    assert ingestor.ingest(str(tmp_path / "a"), progress=False).added == ["x.txt"]  # a plain string path
    report = ingestor.ingest([tmp_path / "b"], progress=False)
    assert report.added == [] and report.updated == []
    assert "already used by" in report.skipped[0].reason and str(first.resolve()) in report.skipped[0].reason
    assert store.get_articles(["x.txt"])["x.txt"].source == str(first.resolve())
    # Once the first file is gone (the folder moved, say), the same id may be taken over.
    first.unlink()
    assert ingestor.ingest([tmp_path / "b"], progress=False).updated == ["x.txt"]
    assert store.get_articles(["x.txt"])["x.txt"].source == str(second.resolve())
    check_index(store, embedder)


# --- CLI -------------------------------------------------------------------------------------------------------


def run_cli(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ingest", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=180)


@pytest.mark.heavy
def test_cli_ingest_list_and_delete(tmp_path, tmp_settings, subprocess_env, store_factory, embedder):
    src = tmp_path / "src"
    write(src / "a.txt", "Grain prices climb\n\n" + paragraph("grain", 10))
    write(src / "b.md", "# Copper strike ends\n\n" + paragraph("copper", 4))
    write(src / "c.html", NEWS_HTML)
    env = subprocess_env(tmp_settings.data_dir)

    first = run_cli([str(src), "--list", "--quiet"], env, tmp_path)
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert "3 files seen, 3 added, 0 updated, 0 unchanged, 0 duplicates, 0 skipped, 0 pruned" in out
    rows = {line.split("\t")[0]: line.split("\t") for line in out.splitlines() if "\t" in line}
    assert sorted(rows) == ["a.txt", "b.md", "c.html"]
    assert rows["a.txt"][1] == "Grain prices climb" and re.fullmatch(r"\d+ chunks", rows["a.txt"][2])
    assert rows["b.md"][1] == "Copper strike ends"
    assert rows["c.html"][1] == "Harbour bridge reopens after repairs"
    assert out.rstrip().endswith("3 articles")

    second = run_cli(["--delete", "a.txt", "--delete", "missing.txt", "--list"], env, tmp_path)
    assert second.returncode == 1
    assert "deleted a.txt" in second.stdout
    assert "no article with id 'missing.txt'" in second.stderr
    listed = [line.split("\t")[0] for line in second.stdout.splitlines() if "\t" in line]
    assert listed == ["b.md", "c.html"] and second.stdout.rstrip().endswith("2 articles")

    store = store_factory(tmp_settings)  # first open in this process: sees the CLI's writes
    assert sorted(check_index(store, embedder)) == ["b.md", "c.html"]
    assert store.chunk_ids("a.txt") == []


def test_failed_write_mid_run_is_repaired_by_the_next_run_in_the_same_process(store, embedder, tmp_path):
    """Chroma failing while a group is written (the writer thread) stops the run with that error; groups
    committed before it stay, and the next run of the same process repairs the half-written group."""
    src = tmp_path / "src"
    for n in range(6):
        write(src / f"{n}.txt", f"Story {n}\n\n" + paragraph(f"topic{n}", 12))
    # About one article a group: several groups, each written while the next encodes.
    ingestor = Ingestor(store, store.settings.model_copy(update={"ingest_group_chunks": 2}))
    real_put_articles = store.put_articles
    calls = []

    def failing_second_commit(records):
        calls.append([r.article_id for r in records])
        if len(calls) == 2:
            raise ConnectionError("chroma went away")
        return real_put_articles(records)

    store.put_articles = failing_second_commit
    try:
        with pytest.raises(ConnectionError, match="chroma went away"):
            ingestor.ingest([src], progress=False)
    finally:
        del store.put_articles
    committed = store.all_articles()
    assert [r.article_id for r in committed] == calls[0]
    half_written = calls[1]
    assert store.chunk_ids(half_written[0]), "the failed group wrote its chunks"
    # Only the failed group's batch stays open; the group encoded meanwhile was never written and is closed.
    assert [batch.article_ids for batch in store.pending_batches()] == [half_written]

    report = ingestor.ingest([src], progress=False)
    assert report.repaired == 1 and report.unchanged == len(calls[0])
    assert sorted(report.added) == sorted(f"{n}.txt" for n in range(6) if f"{n}.txt" not in calls[0])
    records = check_index(store, embedder)
    assert sorted(records) == sorted(f"{n}.txt" for n in range(6))


def test_pending_batches_of_other_writers_are_left_until_abandoned(store, embedder, tmp_path):
    """A pending batch is repaired when its writer is provably gone: a dead pid in this process namespace.
    A writer elsewhere (another machine, or a container with the same host name) is only judged by age."""
    import socket

    from ingest.journal import STALE_PENDING_SECONDS, writer_host

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    def pending(host: str, age: float) -> str:
        pending_id = f"{PENDING_PREFIX}{host}:{dead.pid}:{time.time_ns()}"
        store.put_pending(PendingBatch(pending_id, ["x.txt"], host, dead.pid, time.time() - age))
        return pending_id

    pending(writer_host(), 0)  # this namespace, dead pid: repaired
    elsewhere_live = pending(f"{socket.gethostname()}/other-namespace", 60)  # kept: its pid means nothing here
    pending("other-machine", STALE_PENDING_SECONDS + 60)  # abandoned long ago: repaired
    assert ingestor_for(store).repair() == 2
    assert pending_ids(store) == [elsewhere_live]


# --- kill -9 ---------------------------------------------------------------------------------------------------


@pytest.mark.heavy
def test_kill_9_mid_ingest_then_rerun_is_consistent(tmp_path, test_corpus, settings_factory, subprocess_env,
                                                    store_factory, embedder):
    src = tmp_path / "src"
    # About 135 files (five variants of each text article of the test corpus, byte-identical pairs included),
    # several hundred chunks: a dozen groups of 32, so the kill lands mid-run.
    files = corpus_variants(test_corpus, src, copies=5)
    settings = settings_factory("killed")
    env = subprocess_env(settings.data_dir, RAG_INGEST_GROUP_CHUNKS="32")
    proc = subprocess.Popen([sys.executable, "-m", "ingest", str(src)], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = bytearray()

    def pump() -> None:
        while chunk := os.read(proc.stderr.fileno(), 4096):
            stderr.extend(chunk)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    progress = re.compile(rb"embedding:\s*\d+%\|[^|\r\n]*\|\s*(\d+)/(\d+)")
    killed_at = None
    delay = random.uniform(0.05, 1.5)
    deadline = time.monotonic() + 150
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = [(int(a), int(b)) for a, b in progress.findall(bytes(stderr))]
            if done and 0 < done[-1][0] < done[-1][1]:  # at least one group committed, more to come
                # Somewhere in the next group: mostly while it is embedded, sometimes while it is written.
                time.sleep(delay)
                killed_at = done[-1]
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None and killed_at is None:
            proc.kill()
        proc.wait(timeout=30)  # reaped: its pid is dead, so its pending batch counts as abandoned
        reader.join(timeout=5)
    assert killed_at is not None, f"ingest finished or stalled before it could be killed:\n{stderr.decode()[-2000:]}"
    assert proc.returncode == -signal.SIGKILL

    store = store_factory(settings)
    committed = store.all_articles()
    assert 0 < len(committed) < len(files), "the kill should land after the first group and before the last"
    pending = pending_ids(store)
    # At most two batches were open: one being written while the next was encoded.
    assert all(p.startswith(PENDING_PREFIX) for p in pending) and len(pending) <= 2

    state = (f"killed {delay:.2f} s after {killed_at[0]}/{killed_at[1]} chunks: {len(committed)} articles "
             f"committed, {sum(r.chunks for r in committed)} committed chunks, {store.chunk_count()} chunks stored, "
             f"{len(pending)} pending batch")
    ingestor = Ingestor(store)
    report = ingestor.ingest([src], progress=False)
    assert report.repaired == len(pending), state
    assert report.unchanged == len(committed)
    assert len(report.added) + len(report.duplicates) == len(files) - len(committed)
    try:
        records = check_index(store, embedder)
    except AssertionError as exc:
        raise AssertionError(f"{state}: {exc}") from exc
    assert len(records) == len(files), state
    by_sha = {}
    for file in files:
        article_id = f"{file.parent.name}/{file.name}"
        assert records[article_id].sha256 == hashlib.sha256(file.read_bytes()).hexdigest()
        by_sha.setdefault(records[article_id].sha256, article_id)
    assert sum(1 for r in records.values() if not r.duplicate_of) == len(by_sha)

    again = ingestor.ingest([src], progress=False)
    assert again.chunks_written == 0 and again.unchanged == len(files) and again.repaired == 0
