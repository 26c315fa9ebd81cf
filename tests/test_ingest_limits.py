"""Hostile input to ingestion: links out of the ingested folder, huge PDFs, huge files, archives. Each is refused
with the reason the user sees, and the rest of the folder ingests."""

from __future__ import annotations

import os
import zipfile

from ingest.ingestor import Ingestor
from tests.ingest_helpers import paragraph, pdf_bytes, reasons, write


def test_links_out_of_the_folder_are_not_followed(tmp_path, store):
    secret = write(tmp_path / "elsewhere" / "secret.txt", "Secret memo\n\n" + paragraph("payroll", 3))
    root = tmp_path / "articles"
    write(root / "story.txt", "Harbour story\n\n" + paragraph("harbour", 3))
    os.symlink(secret, root / "link.txt")
    os.symlink(secret.parent, root / "linked-folder")
    os.symlink(root / "story.txt", root / "inside-link.txt")  # stays inside the folder: allowed
    report = Ingestor(store).ingest([root], progress=False)
    why = reasons(report)
    assert "outside" in why["link.txt"] and "not followed" in why["link.txt"]
    assert "not followed" in why["linked-folder"] and "secret.txt" not in why  # the linked folder is not entered
    assert sorted(report.added + [a for a, _ in report.duplicates]) == ["inside-link.txt", "story.txt"]
    texts = [r.text for r in store.get_articles(store_ids(store), with_text=True).values()]
    assert not any("payroll" in t for t in texts)


def store_ids(store) -> list[str]:
    return [r.article_id for r in store.all_articles()]


def test_a_pdf_over_the_page_limit_is_refused(tmp_path, settings_factory, store_factory):
    settings = settings_factory("pdf-limit", max_pdf_pages=3)
    root = tmp_path / "pdfs"
    write(root / "short.pdf", pdf_bytes([["Page one of the Velmora report."], ["Page two."]], title="Short"))
    write(root / "long.pdf", pdf_bytes([[f"Page {i} of the long report."] for i in range(5)], title="Long"))
    report = Ingestor(store_factory(settings), settings).ingest([root], progress=False)
    assert report.added == ["short.pdf"]
    assert reasons(report)["long.pdf"] == "PDF of 5 pages; the limit is 3 (RAG_MAX_PDF_PAGES)"


def test_an_oversize_file_is_refused_before_it_is_read(tmp_path, store):
    root = tmp_path / "big"
    write(root / "fine.txt", "Fine story\n\n" + paragraph("fine", 3))
    with open(root / "huge.txt", "wb") as f:  # 50 GB, sparse: reading it whole would never finish
        f.truncate(50 * 10**9)
    report = Ingestor(store).ingest([root], progress=False)
    assert report.added == ["fine.txt"]
    assert reasons(report)["huge.txt"].startswith("file too large (50000.0 MB > 10.0 MB limit)")


def test_archives_are_refused_even_disguised_as_text(tmp_path, store):
    root = tmp_path / "archives"
    bomb = root / "bomb.zip"
    bomb.parent.mkdir(parents=True)
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.txt", b"\0" * 5_000_000)
    write(root / "bomb.txt", bomb.read_bytes())  # the same archive under a text name
    write(root / "ok.txt", "Ok story\n\n" + paragraph("ok", 3))
    report = Ingestor(store).ingest([root], progress=False)
    why = reasons(report)
    assert report.added == ["ok.txt"]
    assert why["bomb.zip"] == "unsupported file type .zip"
    assert "binary" in why["bomb.txt"] or "not text" in why["bomb.txt"], why["bomb.txt"]
