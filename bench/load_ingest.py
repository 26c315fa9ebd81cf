"""bench/load.py --ingest: upload articles through the app's web page while the users ask (``PageSession`` does what
the page does over HTTP), and check that no answer shows an article that was not committed whole (``IngestRun``:
``observe`` each answer as it arrives, ``verify`` at the end, ``report`` the uploads and the half articles).
"""

from __future__ import annotations

import html
import json
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from bench.load_clients import ERRORS_SHOWN, REQUEST_TIMEOUT_S, failure

RECENT_UPLOADS = 3  # the users ask about the titles of the last few uploads begun
UPLOAD_BOX = ("upload", "upload")  # the elem_id of the Articles tab's upload box and the event that ingests
STATUS_ITEM = re.compile(r'<li class="(ok|bad)">(.*?)</li>', re.S)
SAVED_AS = re.compile(r"\(saved as (.+?)\)")


class PageSession:
    """What the page does over HTTP (httpx): log in, read the page's configuration, upload a file into the upload
    box and wait for its queued event, call a Gradio API endpoint."""

    def __init__(self, url: str, auth: Optional[tuple[str, str]]):
        import httpx

        self.http = httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S, headers={"Accept-Encoding": "identity"})
        if auth is not None:
            self.http.post("/login", data={"username": auth[0], "password": auth[1]}).raise_for_status()
        config = self.http.get("/config").raise_for_status().json()
        elem_id, event = UPLOAD_BOX
        self.box = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)
        self.event = next(d["id"] for d in config["dependencies"] if [self.box, event] in d["targets"])

    def upload(self, name: str, data: bytes) -> str:
        """Upload one file as the page does; the upload status HTML the page would show (RuntimeError on failure)."""
        from rag.web.library import NEWEST_INGESTED

        sent = self.http.post("/gradio_api/upload", files=[("files", (name, data))]).raise_for_status().json()
        file = {"path": sent[0], "orig_name": name, "size": len(data), "meta": {"_type": "gradio.FileData"}}
        session = uuid.uuid4().hex[:12]
        self.http.post("/gradio_api/queue/join", json={
            "data": [[file], "", NEWEST_INGESTED], "fn_index": self.event, "trigger_id": self.box,
            "session_hash": session, "event_data": None}).raise_for_status()
        with self.http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                message = json.loads(line[5:]) if line.startswith("data:") else {}
                if message.get("msg") == "process_completed":
                    output = message.get("output") or {}
                    if not message.get("success"):
                        raise RuntimeError(f"the upload event failed: {output.get('error') or output}")
                    return str(output["data"][0])
                if message.get("msg") == "unexpected_error":
                    raise RuntimeError(f"the upload event failed: {message.get('message')}")
        raise RuntimeError("the upload's event stream ended without a result")

    def articles(self) -> list[dict]:
        """Every indexed article (the Gradio API ``/articles``)."""
        event = self.http.post("/gradio_api/call/articles", json={"data": []}).raise_for_status().json()["event_id"]
        kind = ""
        with self.http.stream("GET", f"/gradio_api/call/articles/{event}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:") and kind in ("complete", "error"):
                    if kind == "error":
                        raise RuntimeError(f"/articles failed: {line[5:].strip()}")
                    return json.loads(json.loads(line[5:])[0])
        raise RuntimeError("/articles gave no result")

    def close(self) -> None:
        """Close the HTTP session."""
        self.http.close()


@dataclass
class Upload:
    """One file to upload; ``text`` and ``sha`` are what the app indexes of it (the same loader)."""

    name: str
    data: bytes
    title: str
    text: str
    sha: str
    checked: bool = True  # False: its id was already indexed when the run began
    began: float = math.inf  # time.monotonic() when its upload began
    ended: Optional[float] = None  # and when the page's reply came
    outcome: str = ""  # added, updated, unchanged, duplicate, rejected, failed
    message: str = ""


def upload_outcome(status_html: str) -> tuple[str, str, Optional[str]]:
    """(outcome, message, the id it was saved as when renamed) from the upload status the page shows."""
    items = STATUS_ITEM.findall(status_html)
    if not items:
        return "failed", f"no status: {status_html[:80]}", None
    kind, item = items[0]
    text = html.unescape(re.sub(r"<[^>]+>", "", item)).lstrip("✓✗ ").strip()
    message = text.split(": ", 1)[-1]
    if kind == "bad":
        return "rejected", message.removeprefix("rejected: "), None
    saved = SAVED_AS.search(message)
    outcome = next((o for prefix, o in (("added", "added"), ("updated", "updated"), ("already indexed", "unchanged"),
                                        ("identical to", "duplicate")) if message.startswith(prefix)), "added")
    return outcome, message, saved.group(1) if saved else None


def load_uploads(folder: Path, count: int) -> list[Upload]:
    """Up to ``count`` readable articles of ``folder`` (sorted by path; one per file name), as the app reads them."""
    from ingest.loaders import SUPPORTED_SUFFIXES, SkipFile, load_bytes

    uploads: dict[str, Upload] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        if len(uploads) >= count:
            break
        if path.suffix.lower() not in SUPPORTED_SUFFIXES or path.name in uploads:
            continue
        data = path.read_bytes()
        try:
            article = load_bytes(data, Path(path.name))
        except SkipFile:
            continue
        uploads[path.name] = Upload(path.name, data, article.title or article.text[:120], article.text, article.sha256)
    return list(uploads.values())


class IngestRun:
    """Uploads ``uploads`` through the page, one at a time, and checks the answers that show them; ``uploader`` and
    ``lister`` are :class:`PageSession` s (the lister reads the article list)."""

    def __init__(self, uploader, lister, uploads: list[Upload]):
        self.uploader, self.lister = uploader, lister
        self.uploads = uploads
        indexed = {r["article_id"] for r in self.lister.articles()}
        for upload in uploads:
            upload.checked = upload.name not in indexed
        self.by_id = {u.name: u for u in uploads if u.checked}
        self.begun: list[Upload] = []
        self.thread = threading.Thread(target=self._upload_all, name="ingest", daemon=True)
        self.seconds = 0.0
        self.lock = threading.Lock()
        self.seen: list[tuple[float, dict, dict[str, Upload]]] = []  # (arrival, answer, the uploads it shows)
        self.half: dict[tuple[int, str], str] = {}  # (answer number, article id) -> what was wrong
        self.in_flight = 0  # answers that showed an article while its upload was running
        self.probed = 0  # questions about an article asked while its upload was running
        self.listing_lock = threading.Lock()
        self.committed: set[str] = set(indexed)
        self.listed_at = -math.inf  # when the last article list was asked for
        self.listings = 0
        self.check_errors: list[str] = []

    def start(self) -> None:
        """Begin the uploads, one at a time in their own thread."""
        self.thread.start()

    def running(self) -> bool:
        """Whether the uploads are still under way."""
        return self.thread.is_alive()

    def _upload_all(self) -> None:
        began = time.perf_counter()
        for upload in self.uploads:
            upload.began = time.monotonic()
            self.begun.append(upload)
            try:
                status = self.uploader.upload(upload.name, upload.data)
                upload.outcome, upload.message, saved_as = upload_outcome(status)
            except Exception as exc:  # noqa: BLE001 -- a failed upload is counted and the next one goes on
                upload.outcome, upload.message, saved_as = "failed", failure(exc), None
            upload.ended = time.monotonic()
            if saved_as and saved_as != upload.name and upload.checked:
                with self.lock:
                    self.by_id[saved_as] = self.by_id.pop(upload.name)
        self.seconds = time.perf_counter() - began

    def question(self, i: int) -> Optional[str]:
        """Every other question: the title of one of the last uploads begun (None: ask from the question file)."""
        recent = self.begun[-RECENT_UPLOADS:]
        if not (i % 2 and recent):
            return None
        upload = recent[-1 - (i // 2) % len(recent)]
        if upload.ended is None:
            with self.lock:
                self.probed += 1
        return upload.title

    def observe(self, answer: dict, arrived: float) -> None:
        """Check an answer the moment it arrives: no uploaded article before its upload began, and none whose
        upload is running unless the index has committed it."""
        shown = {p.get("article_id") for p in answer.get("passages", [])}
        shown |= {d for p in answer.get("passages", []) for d in p.get("duplicates", [])}
        shown |= {c.get("article_id") for c in answer.get("citations", [])}
        with self.lock:
            ids = {i: self.by_id[i] for i in shown if i in self.by_id}
            if not ids:
                return
            number = len(self.seen)
            self.seen.append((arrived, answer, ids))
        for article_id, upload in sorted(ids.items()):
            if arrived < upload.began:
                self._half(number, article_id, "shown before its upload began")
            elif upload.ended is None or arrived < upload.ended:
                with self.lock:
                    self.in_flight += 1
                if not self._committed(article_id, arrived):
                    self._half(number, article_id, "shown while it was being uploaded, before the index committed it")

    def _committed(self, article_id: str, since: float) -> bool:
        """Whether the index lists ``article_id`` in an article list asked for after ``since``."""
        with self.listing_lock:
            if article_id in self.committed:
                return True
            if self.listed_at >= since:
                return False
            asked = time.monotonic()
            try:
                listing = self.lister.articles()
            except Exception as exc:  # noqa: BLE001 -- a check that could not run is reported, not counted as half
                self.check_errors.append(failure(exc))
                return True
            self.committed |= {r["article_id"] for r in listing}
            self.listed_at, self.listings = asked, self.listings + 1
            return article_id in self.committed

    def _half(self, number: int, article_id: str, why: str) -> None:
        with self.lock:
            self.half.setdefault((number, article_id), why)

    def verify(self) -> None:
        """At the end: every passage and citation of an uploaded article is a span of the whole article as
        uploaded, of that version and of a chunk the committed article has."""
        try:
            final = {r["article_id"]: r for r in self.lister.articles()}
        except Exception as exc:  # noqa: BLE001 -- reported as a check that could not run
            self.check_errors.append(f"the final article list: {failure(exc)}")
            return
        for number, (_, answer, ids) in enumerate(self.seen):
            for article_id, upload in ids.items():
                why = self._whole(article_id, upload, final.get(article_id), answer)
                if why:
                    self._half(number, article_id, why)

    @staticmethod
    def _whole(article_id: str, upload: Upload, record: Optional[dict], answer: dict) -> str:
        """What is wrong with what ``answer`` shows of ``article_id`` ("" when nothing)."""
        if record is None:
            return "not in the index at the end"
        for p in answer.get("passages", []):
            if p.get("article_id") != article_id:
                continue
            parts = str(p.get("chunk_id", "")).rsplit("#", 2)  # article id # content hash (16) # chunk number
            version, chunk = (parts[1], parts[2]) if len(parts) == 3 and parts[0] == article_id else ("", "")
            if record.get("duplicate_of") or not record.get("chunks"):
                return "a passage of an article the index holds no chunks of"
            if version != upload.sha[:16]:
                return f"a passage of another version ({p.get('chunk_id')})"
            if not chunk.isdigit() or int(chunk) >= int(record["chunks"]):
                return f"a chunk the committed article does not have ({p.get('chunk_id')} of {record['chunks']})"
            if upload.text[p["start_char_idx"]:p["end_char_idx"]] != p.get("text"):
                return f"a passage that is not the article's text at {p['start_char_idx']}:{p['end_char_idx']}"
        for c in answer.get("citations", []):
            quoted = upload.text[c["start_char_idx"]:c["end_char_idx"]]
            if c.get("article_id") == article_id and quoted != c.get("quote"):
                return f"a citation that is not the article's text at {c['start_char_idx']}:{c['end_char_idx']}"
        return ""

    def report(self) -> None:
        """The uploads and the checks, then ``uploads=U upload_errors=E half_articles=H``."""
        done = [u for u in self.uploads if u.outcome not in ("", "failed", "rejected")]
        failed = [u for u in self.uploads if u.outcome in ("", "failed", "rejected")]
        outcomes = {o: sum(u.outcome == o for u in done) for o in ("added", "updated", "unchanged", "duplicate")}
        mean = self.seconds / len(self.uploads) if self.uploads else 0.0
        print(f"uploads       {len(done)} of {len(self.uploads)} done in {self.seconds:.1f} s ({mean:.2f} s each): "
              + ", ".join(f"{n} {o}" for o, n in outcomes.items()) + f"; {len(failed)} failed")
        unchecked = sum(not u.checked for u in self.uploads)
        if unchecked:
            print(f"  {unchecked} of them were indexed before the run began: not checked")
        for u in failed[:ERRORS_SHOWN]:
            print(f"  upload error: {u.name}: {u.outcome or 'not sent'}: {u.message}")
        print(f"half articles {len(self.half)} in {len(self.seen)} answers showing an uploaded article; "
              f"{self.probed} questions asked about an article while it was being uploaded, {self.in_flight} answers "
              f"showed one before its upload returned ({self.listings} article lists read to check those)")
        for (number, article_id), why in list(self.half.items())[:ERRORS_SHOWN]:
            print(f"  answer {number}: {article_id}: {why}")
        for message in list(dict.fromkeys(self.check_errors))[:ERRORS_SHOWN]:
            print(f"  check not run: {message}")
        print(f"uploads={len(done)} upload_errors={len(failed)} half_articles={len(self.half)}")

    def close(self) -> None:
        """Close both page sessions."""
        self.uploader.close()
        self.lister.close()
