"""Bad input to ingestion: each bad file or path is skipped with the reason the user sees, stored articles stay
as they were, and an article id taken by another file is refused."""

from __future__ import annotations

from tests.ingest_helpers import (
    NO_MAIN_TEXT_HTML,
    check_index,
    dense_search,
    ingestor_for,
    paragraph,
    pdf_bytes,
    reasons,
    snapshot,
    write,
)


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
