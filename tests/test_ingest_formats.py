"""Each input format ingested with real components (files on disk, the real embedding model, Chroma on disk):
titles, metadata, exact spans, PDF pages, legacy encodings, sentence vectors, chunks that fit the encoder.
"""

from __future__ import annotations

import re

import pytest

from ingest.writer import embed_text
from rag.core.sentences import sentence_spans
from rag.index.store import chunk_id
from tests.ingest_helpers import (
    NEWS_HTML,
    article_texts,
    check_index,
    chunks_by_article,
    dense_search,
    ingestor_for,
    paragraph,
    pdf_bytes,
    write,
)


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
