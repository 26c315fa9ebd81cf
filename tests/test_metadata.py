"""Articles keep their publish date, authors, URL and outlet: from HTML meta tags and JSON-LD, Markdown front
matter, and manifests beside the folder; a changed manifest relabels stored articles without re-embedding.

Real files (``tests/data/dated``: four short fictional articles, one per source of metadata, plus none),
the real embedding model and Chroma on disk.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from ingest import Article, Ingestor, ManifestError
from ingest.discovery import discover
from ingest.manifest import ManifestEntry, load_manifests, read_manifest
from ingest.metadata import author_names, iso_date, split_front_matter
from tests.conftest import REPO_ROOT
from tests.ingest_helpers import check_index, chunks_by_article, write

DATED = REPO_ROOT / "tests" / "data" / "dated"
FIELDS = ("title", "published", "author", "url", "site")

# What each file of DATED says about itself.
OWN = {
    "ferry-strike-ends.html": {  # JSON-LD NewsArticle only: no meta tags
        "title": "Island ferry strike ends after nine days", "published": "2023-11-02",
        "author": "Tomasz Wren, Ada Quill", "url": "", "site": "Harbour Gazette",
    },
    "mill-reopens.html": {  # meta tags: author, og:site_name, article:published_time, canonical link
        "title": "Wool mill reopens in Fennick", "published": "2024-02-09", "author": "Mirela Voss",
        "url": "https://dalevalleypost.example/2024/02/fennick-wool-mill-reopens", "site": "Dale Valley Post",
    },
    "allotment-show.md": {  # YAML front matter
        "title": "Giant marrow wins the Brackwell allotment show", "published": "2023-08-19",
        "author": "Nia Penrose, Colm Ashdown", "url": "https://parishnews.example/brackwell-allotment-show",
        "site": "Brackwell Parish News",
    },
    "library-hours.txt": {  # nothing but a headline
        "title": "Library extends its opening hours", "published": "", "author": "", "url": "", "site": "",
    },
}


def meta_of(record) -> dict:
    return {name: getattr(record, name) for name in FIELDS}


def write_manifest(path: Path, lines: list) -> Path:
    """JSON Lines: a dict is written as JSON, a string as it is (to write broken lines)."""
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    return write(path, text)


def copy_dated(dest: Path) -> Path:
    shutil.copytree(DATED, dest)
    return dest


# --- pure parts: dates, authors, front matter, manifest lines ---------------------------------------------------


def test_dates_of_every_accepted_form_become_iso_and_others_are_refused():
    for value in ("2022-02-07", "2022/02/07", "20220207", " 2022-02-07 ", "2022-02-07T23:30:00Z",
                  "2022-02-07T23:30:00-05:00", "2022-02-07T23:30:00.123+0530", "2022-02-07 23:30",
                  date(2022, 2, 7), datetime(2022, 2, 7, 23, 30, tzinfo=timezone.utc), 20220207):
        assert iso_date(value) == "2022-02-07", value  # the date as written, never moved to another zone
    assert iso_date("") == ""
    for value in ("07/02/2022", "Feb 7, 2022", "2022-02", "2022-02-30", "2022/02-07", "2022-02-07 noon",
                  "yesterday", True, None, ["2022-02-07"]):
        with pytest.raises(ValueError):
            iso_date(value)


def test_author_lists_become_one_comma_separated_string():
    assert author_names(["Ben Morse", " Aimee Lewis ", "Ben Morse", ""]) == "Ben Morse, Aimee Lewis"
    assert author_names("Tomasz Wren; Ada Quill") == "Tomasz Wren, Ada Quill"  # trafilatura's separator
    assert author_names("Wren, Tomasz") == "Wren, Tomasz"
    assert author_names([]) == "" and author_names("") == ""
    assert author_names(42) is None and author_names(["Ada", 3]) is None


def test_front_matter_gives_metadata_and_is_cut_from_the_text():
    warnings: list[str] = []
    text = ("---\nTitle: Bells ring again\npublished: 2021/12/24\nauthor: Rhea Small\nsite: Chapel Times\n"
            "url: https://chapel.example/bells\n---\n\n# Bells\n\nThe bells rang.\n")
    fields, body = split_front_matter(text, "bells.md", warnings)
    assert fields == {"title": "Bells ring again", "published": "2021-12-24", "author": "Rhea Small",
                      "url": "https://chapel.example/bells", "site": "Chapel Times"}
    assert body == "# Bells\n\nThe bells rang.\n" and warnings == []

    fields, body = split_front_matter("---\ndate: someday\nauthor: [1, 2]\n---\nBody.\n", "odd.md", warnings)
    assert fields == {} and body == "Body.\n"
    assert warnings == [
        "odd.md front matter: unrecognised publish date 'someday' (expected YYYY-MM-DD); left empty",
        "odd.md front matter: author must be a name or a list of names, not [1, 2]; ignored",
    ]

    broken = "---\ntitle: [unclosed\n---\nBody.\n"
    warnings.clear()
    assert split_front_matter(broken, "broken.md", warnings) == ({}, broken)
    assert len(warnings) == 1 and warnings[0].startswith("broken.md: front matter is not valid YAML")
    # A rule around a line of text is Markdown, not front matter; text without a block is left alone.
    for text in ("---\nJust a line\n---\nBody.\n", "# Title\n\n---\n\nkey: value\n", "---\n"):
        warnings.clear()
        assert split_front_matter(text, "plain.md", warnings) == ({}, text) and warnings == []


def test_manifest_lines_that_cannot_be_used_are_warnings_naming_the_manifest_and_line(tmp_path):
    manifest = write_manifest(tmp_path / "m.jsonl", [
        {"path": "a.txt", "publish_date": "2022/02/07", "authors": ["Ann Lee", "Bo Park"], "site": "cnn",
         "url": "https://cnn.example/a", "title": "A", "extra": "ignored"},
        "{not json",
        {"url": "https://cnn.example/b"},
        "",
        ["a list"],
        {"path": "./sub/../b.txt", "publish_date": "07.02.2022", "site": 5},
        {"path": "../outside.txt"},
        {"path": "a.txt", "site": "bbc"},
    ])
    entries, warnings = read_manifest(manifest)
    assert entries == {
        "a.txt": ManifestEntry(origin=f"{manifest} line 1", path="a.txt", title="A", published="2022-02-07",
                               author="Ann Lee, Bo Park", url="https://cnn.example/a", site="cnn"),
        "b.txt": ManifestEntry(origin=f"{manifest} line 6", path="b.txt"),
    }
    assert warnings == [
        f"{manifest} line 2: not valid JSON (Expecting property name enclosed in double quotes); line ignored",
        f'{manifest} line 3: no "path" naming the article file; line ignored',
        f"{manifest} line 5: not a JSON object; line ignored",
        f"{manifest} line 6 (b.txt): unrecognised publish date '07.02.2022' (expected YYYY-MM-DD); left empty",
        f"{manifest} line 6 (b.txt): site must be text, not 5; ignored",
        f"{manifest} line 7: path '../outside.txt' is outside the folder the manifest describes; line ignored",
        f"{manifest} line 8: a.txt is listed before ({manifest} line 1); this line is ignored",
    ]


def test_a_manifest_entry_wins_over_the_file_except_its_title():
    article = Article(title="Own headline", source="x.txt", sha256="0", text="Own headline\n\nBody.",
                      published="2020-01-01", author="File Author", url="", site="")
    entry = ManifestEntry(origin="m line 1", path="x.txt", title="Manifest title", published="2022-02-07",
                          site="cnn")
    entry.apply(article)
    assert meta_of(article) == {"title": "Own headline", "published": "2022-02-07", "author": "File Author",
                                "url": "", "site": "cnn"}  # what the entry does not state stays the file's
    untitled = Article(title="", source="y.pdf", sha256="1", text="...")
    entry.apply(untitled)
    assert untitled.title == "Manifest title"  # only a file without a title of its own takes the manifest's
    assert entry.relabelled(article) is None  # nothing new to store
    relabelled = ManifestEntry(origin="m line 1", path="x.txt", title="Other", site="bbc").relabelled(article)
    assert meta_of(relabelled) == {**meta_of(article), "site": "bbc"} and article.site == "cnn"


def test_unusable_manifests_are_errors_for_the_whole_run(tmp_path):
    src = write(tmp_path / "src" / "a.txt", "A\n\nBody.").parent
    other = write(tmp_path / "other" / "b.txt", "B\n\nBody.").parent
    manifest = write_manifest(tmp_path / "m.jsonl", [{"path": "a.txt"}])
    with pytest.raises(ManifestError, match=r"manifest .*missing\.jsonl does not exist"):
        load_manifests([src], tmp_path / "missing.jsonl")
    with pytest.raises(ManifestError, match="is a folder"):
        load_manifests([src], other)
    write(tmp_path / "latin1.jsonl", '{"path": "a.txt", "site": "Caf\xe9"}'.encode("latin-1"))
    with pytest.raises(ManifestError, match="is not UTF-8 text"):
        load_manifests([src], tmp_path / "latin1.jsonl")
    for paths in ([src, other], [src / "a.txt"], []):  # its paths are relative to exactly one folder
        with pytest.raises(ManifestError, match="relative to one folder: give exactly that folder"):
            load_manifests(paths, manifest)
    write(src / "manifest.jsonl", b"\xff\xfe not text")  # a folder's own manifest: read, so an error too
    with pytest.raises(ManifestError, match="manifest.jsonl is not UTF-8 text"):
        load_manifests([src, other])


def test_manifests_in_folders_are_found_and_are_not_articles(tmp_path):
    src = tmp_path / "src"
    for name in ("a.txt", "sub/b.txt", "sub/deeper/c.txt"):
        write(src / name, "x")
    write_manifest(src / "manifest.jsonl", [{"path": "a.txt", "site": "top"}, {"path": "sub/b.txt", "site": "top"}])
    write_manifest(src / "sub" / "manifest.jsonl", [{"path": "b.txt", "site": "sub"},
                                                    {"path": "deeper/c.txt", "site": "sub"}])
    write_manifest(src / ".hidden" / "manifest.jsonl", ["not even JSON"])
    found, skipped = discover([src])
    assert [file.relative_to(src).as_posix() for file, _ in found] == ["a.txt", "sub/b.txt", "sub/deeper/c.txt"]
    assert skipped == []
    run = load_manifests([src])
    root = src.resolve()
    # A manifest's paths are relative to its own folder; the deeper manifest wins for the files it lists.
    assert {article_id: run.entry(root, article_id).site for _, article_id in run.entries} == {
        "a.txt": "top", "sub/b.txt": "sub", "sub/deeper/c.txt": "sub",
    }
    assert run.warnings == [] and run.unmatched(found) == []


# --- ingestion with a real store --------------------------------------------------------------------------------


def test_metadata_from_html_meta_json_ld_front_matter_and_none(store, embedder):
    report = Ingestor(store).ingest([DATED], progress=False)
    assert sorted(report.added) == sorted(OWN) and report.skipped == [] and report.warnings == []
    records = check_index(store, embedder)  # spans, chunks and sentence vectors refer to the stored text
    assert {article_id: meta_of(record) for article_id, record in records.items()} == OWN
    # The front matter is not part of the article: the text (every span refers to it) is the Markdown body.
    md = store.get_articles(["allotment-show.md"], with_text=True)["allotment-show.md"]
    assert md.text.startswith("# Brackwell allotment show\n\nA marrow weighing nineteen kilograms")
    assert "Nia Penrose" not in md.text and "---" not in md.text
    assert {c.title for c in chunks_by_article(store)["allotment-show.md"]} == {OWN["allotment-show.md"]["title"]}


def test_folder_manifest_wins_over_the_file_and_its_problems_are_warnings(store, embedder, tmp_path):
    src = copy_dated(tmp_path / "src")
    manifest = write_manifest(src / "manifest.jsonl", [
        {"path": "library-hours.txt", "url": "https://ostley.example/library", "title": "Not used: the file has one",
         "publish_date": "2022/02/07", "authors": ["Ivo Grant", "Lena Shaw"], "site": "Ostley Courier"},
        {"path": "mill-reopens.html", "publish_date": "20240301", "site": "dvp"},
        "this line is not JSON",
        {"site": "no path"},
        {"path": "missing/story.txt", "site": "nowhere"},
        {"path": "ferry-strike-ends.html", "publish_date": "the 2nd of November", "url": "https://hg.example/ferry"},
    ])
    report = Ingestor(store).ingest([src], progress=False)
    assert sorted(report.added) == sorted(OWN) and report.skipped == []  # the manifest is not an article
    assert report.seen == len(OWN)
    assert report.warnings == [
        f"{manifest} line 3: not valid JSON (Expecting value); line ignored",
        f'{manifest} line 4: no "path" naming the article file; line ignored',
        f"{manifest} line 6 (ferry-strike-ends.html): unrecognised publish date 'the 2nd of November' "
        "(expected YYYY-MM-DD); left empty",
        f"{manifest} line 5: no file {src.resolve() / 'missing' / 'story.txt'} to ingest",
    ]
    records = check_index(store, embedder)
    assert meta_of(records["library-hours.txt"]) == {
        "title": "Library extends its opening hours", "published": "2022-02-07", "author": "Ivo Grant, Lena Shaw",
        "url": "https://ostley.example/library", "site": "Ostley Courier",
    }
    assert meta_of(records["mill-reopens.html"]) == {**OWN["mill-reopens.html"], "published": "2024-03-01",
                                                     "site": "dvp"}
    # A bad date in the manifest leaves the file's own; the rest of the line still applies.
    assert meta_of(records["ferry-strike-ends.html"]) == {**OWN["ferry-strike-ends.html"],
                                                          "url": "https://hg.example/ferry"}
    assert meta_of(records["allotment-show.md"]) == OWN["allotment-show.md"]


def test_changed_manifest_relabels_stored_articles_without_re_embedding(store, embedder, tmp_path):
    """A manifest beside the folder (RealTime QA's layout): a change to it rewrites the records' metadata only."""
    src = copy_dated(tmp_path / "articles")
    manifest = tmp_path / "articles.jsonl"
    lines = [{"path": "library-hours.txt", "publish_date": "2022/02/07", "site": "Ostley Courier"},
             {"path": "mill-reopens.html", "authors": ["Mirela Voss"]}]  # what the file says already
    write_manifest(manifest, lines)
    ingestor = Ingestor(store)
    first = ingestor.ingest([src], progress=False, manifest=manifest)
    assert sorted(first.added) == sorted(OWN) and first.warnings == [] and first.metadata_updated == []
    chunk_ids = sorted(c.chunk_id for c in store.committed_chunks())
    texts = {i: r.text for i, r in store.get_articles(list(OWN), with_text=True).items()}
    version = store.version()

    lines[0].update(publish_date="2022-02-08T10:00:00Z", authors=["Ivo Grant"], url="https://ostley.example/l")
    lines[1].update(title="A title change alone relabels nothing")
    write_manifest(manifest, lines + [{"path": "ferry-strike-ends.html", "site": "HG"}])
    second = ingestor.ingest([src], progress=False, manifest=manifest)
    assert sorted(second.metadata_updated) == ["ferry-strike-ends.html", "library-hours.txt"]
    assert second.chunks_written == 0 and second.tokens_embedded == 0 and second.sentences_written == 0
    assert second.added == second.updated == [] and second.unchanged == 2
    assert "2 metadata updated" in second.summary() and second.changed() and store.version() != version
    records = check_index(store, embedder)
    assert meta_of(records["library-hours.txt"]) == {
        **OWN["library-hours.txt"], "published": "2022-02-08", "author": "Ivo Grant",
        "url": "https://ostley.example/l", "site": "Ostley Courier",
    }
    assert meta_of(records["ferry-strike-ends.html"]) == {**OWN["ferry-strike-ends.html"], "site": "HG"}
    assert records["mill-reopens.html"].title == OWN["mill-reopens.html"]["title"]
    assert sorted(c.chunk_id for c in store.committed_chunks()) == chunk_ids  # nothing re-embedded
    assert {i: r.text for i, r in store.get_articles(list(OWN), with_text=True).items()} == texts

    version = store.version()
    third = ingestor.ingest([src], progress=False, manifest=manifest)
    assert third.metadata_updated == [] and third.unchanged == len(OWN) and not third.changed()
    assert store.version() == version


def test_unreadable_manifest_stops_the_run_before_anything_is_written(store, tmp_path):
    """And a readable manifest given for the run is used instead of the folder's own."""
    src = copy_dated(tmp_path / "src")
    ingestor = Ingestor(store)
    with pytest.raises(ManifestError, match="does not exist"):
        ingestor.ingest([src], progress=False, manifest=tmp_path / "missing.jsonl")
    with pytest.raises(ManifestError, match="relative to one folder"):
        ingestor.ingest([src, DATED], progress=False, manifest=DATED / "library-hours.txt")
    write(src / "manifest.jsonl", b"\xff\xfe")
    with pytest.raises(ManifestError, match="is not UTF-8 text"):
        ingestor.ingest([src], progress=False)
    assert store.article_count() == 0 and store.chunk_count() == 0 and store.version() == ""

    # A manifest given for the run replaces the folder's own (the broken one is not even read); neither is an
    # article or a skipped file.
    write_manifest(src / "meta.jsonl", [{"path": "library-hours.txt", "site": "Ostley Courier"}])
    report = ingestor.ingest([src], progress=False, manifest=src / "meta.jsonl")
    assert sorted(report.added) == sorted(OWN) and report.skipped == [] and report.warnings == []
    assert report.seen == len(OWN)
    assert store.get_articles(["library-hours.txt"])["library-hours.txt"].site == "Ostley Courier"


@pytest.mark.heavy
def test_cli_manifest_and_list_show_publish_date_and_site(tmp_path, tmp_settings, subprocess_env):
    src = copy_dated(tmp_path / "articles")
    manifest = write_manifest(tmp_path / "articles.jsonl", [
        {"path": "library-hours.txt", "publish_date": "2022/02/07", "site": "Ostley Courier"},
        {"path": "gone.txt", "site": "x"},
    ])
    env = subprocess_env(tmp_settings.data_dir)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ingest", *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=180)

    missing = cli(str(src), "--manifest", str(tmp_path / "nope.jsonl"), "--quiet")
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr == f"error: manifest {tmp_path / 'nope.jsonl'} does not exist\n"
    assert not tmp_settings.data_dir.exists()  # nothing written: the index was not even opened

    done = cli(str(src), "--manifest", str(manifest), "--quiet", "--list")
    assert done.returncode == 0, done.stderr
    assert f"warning: {manifest} line 2: no file {src.resolve() / 'gone.txt'} to ingest" in done.stdout
    assert "4 files seen, 4 added, 0 updated, 0 unchanged, 0 duplicates, 0 skipped, 0 pruned, " \
           "0 metadata updated" in done.stdout
    rows = {line.split("\t")[0]: line.split("\t") for line in done.stdout.splitlines() if "\t" in line}
    assert rows["library-hours.txt"][1] == "Library extends its opening hours"
    assert rows["library-hours.txt"][4:] == ["2022-02-07", "Ostley Courier"]
    assert rows["mill-reopens.html"][4:] == ["2024-02-09", "Dale Valley Post"]
    assert rows["allotment-show.md"][4:] == ["2023-08-19", "Brackwell Parish News"]

    listed = cli("--list", "--json")
    assert listed.returncode == 0, listed.stderr
    by_id = {row["article_id"]: row for row in json.loads(listed.stdout)}
    assert {i: {k: row[k] for k in FIELDS} for i, row in by_id.items()} == {
        **OWN, "library-hours.txt": {**OWN["library-hours.txt"], "published": "2022-02-07", "site": "Ostley Courier"},
    }
