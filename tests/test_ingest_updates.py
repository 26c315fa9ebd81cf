"""Changes to an ingested folder: a changed article replaces its chunks, prune, delete by id, and byte-identical
duplicates stored once and promoted when their stored copy goes."""

from __future__ import annotations

from ingest import delete_article
from tests.ingest_helpers import check_index, chunks_by_article, dense_search, ingestor_for, paragraph, snapshot, write


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
