"""The repository's test corpus ingested once: every format, a byte-identical pair, a cp1252 file; a re-run
embeds nothing."""

from __future__ import annotations

import hashlib
import shutil
from collections import defaultdict

import pytest

from ingest import Ingestor
from rag.index.store import Store
from tests.ingest_helpers import check_index, chunks_by_article


DUP_PAIR = ("politics/kestrel-velodrome-funding.txt", "sport/kestrel-velodrome.txt")  # byte-identical: stored, copy
CP1252_ID = "business/pennant-brewery-pint-price.txt"
HTML_ID = "tech/lumenar-chip-plant.html"
PDF_ID = "business/northfield-rail-annual-review.pdf"
MD_ID = "business/orla-coffee-expansion.md"


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
