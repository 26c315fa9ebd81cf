"""Hostile input to ingestion: every loader is bounded (front matter without aliases and capped, messages that quote a
value cut short, extracted text capped, PDFs sharing one content stream read once), and a file that crashes or kills
ingestion of the uploads folder is quarantined instead of taking the app down at every start. Real files, a real
Chroma store, the real embedding model; the app as a real process where a kill is involved.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from ingest import Ingestor, SkipFile, load_bytes
from ingest.manifest import read_manifest
from ingest.quarantine import KILLED
from tests.conftest import free_port, stop_process
from tests.ingest_helpers import paragraph, reasons, write
from tests.ui_helpers import (  # noqa: F401  (browser: a fixture)
    MAJORITY, QUESTION, browser, open_page, seed_corpus, start_ui, ui_env,
)

BODY = "Harbour reopens\n\nThe harbour of Vellmar reopened on Monday after the storm, the port authority said.\n"
LONGEST_REASON = 300


def alias_bomb(levels: int) -> str:
    """Front matter of ``levels`` nested YAML aliases, each repeating the one before nine times: a few hundred bytes
    that stand for 9 ** (levels + 1) values."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "---\n" + "\n".join(lines) + f"\ndate: *a{levels}\ntitle: *a{levels}\n---\n"


def assert_short_lines(messages: list[str]) -> None:
    assert all("\n" not in m and len(m) <= LONGEST_REASON for m in messages), [m[:400] for m in messages]


@pytest.mark.parametrize("levels", [8, 9])
def test_front_matter_aliases_are_refused_and_the_article_reads_as_text(levels):
    bomb = alias_bomb(levels)
    assert len(bomb) < 600
    article = load_bytes((bomb + BODY).encode(), Path("bomb.md"))
    assert len(article.warnings) == 1 and "aliases (*name) are not accepted" in article.warnings[0]
    assert_short_lines(article.warnings)
    assert article.published == "" and "The harbour of Vellmar reopened" in article.text


def test_front_matter_over_the_size_limit_is_read_as_text():
    block = "---\ntitle: " + "Harbour " * 3000 + "\ndate: 2024-05-06\n---\n"
    article = load_bytes((block + BODY).encode(), Path("big.md"))
    assert any("front matter longer than 16,384 characters" in w for w in article.warnings), article.warnings
    assert article.published == "" and len(article.title) <= 300


def test_values_quoted_in_messages_are_cut_short(tmp_path):
    front = "---\ndate: [" + ", ".join(["2024-05-06"] * 600) + "]\nauthor: {name: " + "x" * 3000 + "}\n---\n"
    article = load_bytes((front + BODY).encode(), Path("quoted.md"))
    assert len(article.warnings) == 2 and "unrecognised publish date" in article.warnings[0]
    assert_short_lines(article.warnings)
    manifest = write(tmp_path / "manifest.jsonl", json.dumps({"path": "a.txt", "publish_date": "soon " * 20000}))
    _, warnings = read_manifest(manifest)
    assert len(warnings) == 1 and "unrecognised publish date" in warnings[0]
    assert_short_lines(warnings)


def test_text_over_the_limit_is_skipped_with_a_one_line_reason(tmp_path, settings_factory, store_factory):
    settings = settings_factory("text-limit", max_text_chars=5000)
    root = tmp_path / "articles"
    write(root / "fine.txt", "Fine story\n\n" + paragraph("fine", 3))
    write(root / "long.txt", "Long story\n\n" + paragraph("long", 60))
    report = Ingestor(store_factory(settings), settings).ingest([root], progress=False)
    assert report.added == ["fine.txt"]
    assert reasons(report)["long.txt"].endswith("characters of text; the limit is 5,000 (RAG_MAX_TEXT_CHARS)")


def shared_stream_pdf(pages: int, text: str, shared: bool = True) -> bytes:
    """A PDF of ``pages`` pages drawn by one content stream (``shared``) or by one stream each, every stream
    showing ``text``: a few kilobytes that make pypdf parse that stream once per page."""
    import io

    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                             NameObject("/BaseFont"): NameObject("/Helvetica")})
    resources = writer._add_object(DictionaryObject({NameObject("/Font"): DictionaryObject(
        {NameObject("/F1"): writer._add_object(font)})}))

    def stream():
        content = DecodedStreamObject()
        content.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode())
        return writer._add_object(content)

    one = stream()
    for _ in range(pages):
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Contents")] = one if shared else stream()
        page[NameObject("/Resources")] = resources
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.fixture
def page_reads(monkeypatch) -> list[int]:
    """How many times pypdf extracts a page's text (a spy on the real method: the text is pypdf's own)."""
    from pypdf import PageObject

    calls: list[int] = []
    real = PageObject.extract_text

    def counted(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PageObject, "extract_text", counted)
    return calls


def test_pdf_pages_sharing_one_content_stream_are_read_once(page_reads):
    data = shared_stream_pdf(2000, "The Vellmar harbour report")
    assert len(data) < 400_000
    article = load_bytes(data, Path("shared.pdf"))
    assert len(page_reads) == 1 and len(article.page_starts) == 2000
    assert article.text.count("The Vellmar harbour report") == 2000


def test_pdf_text_is_capped_while_its_pages_are_read(page_reads):
    with pytest.raises(SkipFile, match=r"PDF with more than 5,000 characters of text \(RAG_MAX_TEXT_CHARS\)"):
        load_bytes(shared_stream_pdf(300, "Harbour " * 100, shared=False), Path("long.pdf"), max_text_chars=5000)
    assert len(page_reads) <= 8  # stopped after the pages that passed the limit, not after all 300


def test_a_reason_is_always_one_short_line():
    reason = str(SkipFile("broken PDF (PdfReadError: " + "bad xref\n" * 500 + ")"))
    assert "\n" not in reason and len(reason) <= LONGEST_REASON and reason.endswith("\u2026")


# --- quarantine ------------------------------------------------------------------------------------------------
def test_a_file_whose_reading_fails_unexpectedly_is_quarantined_and_never_read_again(tmp_path, store, monkeypatch):
    """A parser that runs out of memory (MemoryError from the Markdown loader, the way a real one fails) on one
    upload: the file moves to quarantine/ with its reason, the rest ingests, and the next run does not read it."""
    from ingest import loaders

    uploads = tmp_path / "uploads"
    write(uploads / "fine.txt", BODY)
    write(uploads / "bomb.md", alias_bomb(3) + BODY)

    def out_of_memory(data, path, warnings):
        raise MemoryError()

    monkeypatch.setitem(loaders.LOADERS, ".md", out_of_memory)
    ingestor = Ingestor(store)
    report = ingestor.ingest([uploads], progress=False, quarantine=uploads)
    assert report.added == ["fine.txt"] and report.quarantined == ["bomb.md"]
    assert reasons(report)["bomb.md"] == "unexpected error: MemoryError; moved to quarantine/bomb.md"
    assert not (uploads / "bomb.md").exists() and (uploads / "quarantine" / "bomb.md").is_file()
    note = (uploads / "quarantine" / "bomb.md.reason.txt").read_text()
    assert note.startswith("bomb.md: unexpected error: MemoryError")
    assert not list(uploads.glob(".reading.*"))  # the marker goes once the file is read
    again = ingestor.ingest([uploads], progress=False, quarantine=uploads)
    assert again.unchanged == 1 and again.skipped == [] and again.added == []  # quarantine/ is not read


def test_a_marker_left_by_a_dead_process_quarantines_its_file(tmp_path, store):
    """What a process killed while reading a file leaves (its marker naming the file) is swept before the next
    ingestion of the folder; a live process's marker is left alone."""
    import subprocess

    uploads = tmp_path / "uploads"
    victim = write(uploads / "crash.html", "<html><body><p>" + paragraph("crash", 3) + "</p></body></html>")
    other = write(uploads / "busy.txt", BODY)
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "60"])
    try:
        write(uploads / f".reading.{dead.pid}", json.dumps({"file": str(victim.resolve()), "pid": dead.pid}))
        write(uploads / f".reading.{alive.pid}", json.dumps({"file": str(other.resolve()), "pid": alive.pid}))
        moved = Ingestor(store).sweep_quarantine(uploads)
        assert moved == [f"crash.html ({KILLED})"]
        assert (uploads / "quarantine" / "crash.html").is_file() and other.is_file()
        assert (uploads / f".reading.{alive.pid}").exists() and not (uploads / f".reading.{dead.pid}").exists()
    finally:
        alive.kill()
        alive.wait()


def slow_html(paragraphs: int = 60_000) -> str:
    """A valid 5 MB news page that takes the HTML extractor about ten seconds to read here."""
    body = "".join(f"<p>Paragraph {i} of the harbour story says the ferry {i} sailed late on a windy day.</p>\n"
                   for i in range(paragraphs))
    return f"<html><head><title>Slow page</title></head><body><article>{body}</article></body></html>"


def ask_api(url: str) -> httpx.Response:
    return httpx.post(f"{url}/api/ask", json={"question": QUESTION, "mode": "extractive"}, timeout=60)


@pytest.mark.heavy
def test_an_upload_that_kills_the_app_while_read_is_quarantined_and_the_app_starts(tmp_path):
    """`python ui.py` killed (kill -9, as the kernel's out-of-memory killer does) while reading a saved upload at
    start: the next start moves that file to quarantine/ with its reason, never reads it again, and answers."""
    data, port = tmp_path / "data", free_port()
    uploads = write(data / "uploads" / "slow.html", slow_html()).parent
    env = ui_env(data, seed_corpus(tmp_path / "corpus"), port)
    log = tmp_path / "ui.log"
    with log.open("w") as out:
        import subprocess
        import sys

        from tests.ui_helpers import ROOT

        proc = subprocess.Popen([sys.executable, "ui.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        marker = uploads / f".reading.{proc.pid}"
        deadline = time.monotonic() + 180
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert marker.exists(), log.read_text()[-3000:]
        assert json.loads(marker.read_text())["file"] == str((uploads / "slow.html").resolve())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        stop_process(proc)
    assert (uploads / "slow.html").exists()  # still there: the killed process could not move it

    proc = start_ui(env, log)
    try:
        assert not (uploads / "slow.html").exists() and (uploads / "quarantine" / "slow.html").is_file()
        assert KILLED in (uploads / "quarantine" / "slow.html.reason.txt").read_text()
        assert f"quarantined: slow.html ({KILLED})" in log.read_text()
        reply = ask_api(f"http://127.0.0.1:{port}")
        assert reply.status_code == 200 and MAJORITY in reply.json()["text"]
    finally:
        stop_process(proc)
    proc = start_ui(env, log)  # and the start after that neither reads nor mentions it again
    try:
        assert log.read_text().count("quarantined: slow.html") == 1
        assert ask_api(f"http://127.0.0.1:{port}").status_code == 200
    finally:
        stop_process(proc)


@pytest.mark.heavy
@pytest.mark.browser
def test_an_alias_bomb_uploaded_through_the_page_is_read_as_text_and_the_app_restarts(tmp_path, browser):  # noqa: F811
    """The 400-byte upload that used to write a 624 MB log line (and, one level deeper, exhaust memory) at every
    start: uploaded in a real browser, it is indexed as plain text with a one-line note, and a restart answers."""
    data, port = tmp_path / "data", free_port()
    env = ui_env(data, seed_corpus(tmp_path / "corpus"), port)
    log = tmp_path / "ui.log"
    bomb = write(tmp_path / "harbour-bomb.md", alias_bomb(9) + BODY)
    url = f"http://127.0.0.1:{port}"
    proc = start_ui(env, log)
    try:
        page = open_page(browser, url)
        page.get_by_role("tab", name="Articles").click()
        page.locator("#upload input[type=file]").set_input_files([str(bomb)])
        page.locator("#upload-status li.ok").first.wait_for()
        status = page.locator("#upload-status").inner_text()
        assert "added" in status and "aliases (*name) are not accepted" in status, status
        page.context.close()
        assert ask_api(url).status_code == 200
    finally:
        stop_process(proc)
    proc = start_ui(env, log)
    try:
        assert MAJORITY in ask_api(url).json()["text"]
        harbour = httpx.post(f"{url}/api/ask", json={"question": "When did the Vellmar harbour reopen?"}, timeout=60)
        assert "Monday" in harbour.json()["text"]
    finally:
        stop_process(proc)
    assert max(len(line) for line in log.read_text().splitlines()) < 2000
    assert (data / "uploads" / "harbour-bomb.md").is_file() and not (data / "uploads" / "quarantine").exists()
