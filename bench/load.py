"""Serving under load: N simulated users ask questions of the running app over HTTP, through its plain JSON API
(``POST /api/ask``) or its Gradio API (``/ask``).

    python ui.py &                                     # serves on 127.0.0.1:7860 by default
    python bench/load.py --url http://127.0.0.1:7860 --users 16 --seconds 60
    python bench/load.py --url http://127.0.0.1:7860 --users 16 --seconds 60 --api gradio
    python bench/load.py --url http://127.0.0.1:7860 --users 4 --seconds 120 --mode llm --max-requests 400
    python bench/load.py --url http://127.0.0.1:7860 --users 8 --seconds 60 --ingest ../new-articles --ingest-count 200

Each user is a thread asking questions in a loop, each user starting at a different place in the question file,
until ``--seconds`` pass or ``--max-requests`` have been sent. ``--api http`` (the default when the server has
``/api/ask``) gives each user one keep-alive connection (``http.client``), so the client costs little of the CPU
it shares with the server; ``--api gradio`` gives each user its own ``gradio_client`` Client (the earlier
figures; its threads took about as much CPU as the server). Only a loopback server is accepted. When the app has
a login, the bench uses the one of the RAG_* settings (RAG_USERNAME, RAG_PASSWORD). The questions default to the
BBC dev set under RAG_EVAL_DATA, else the small bundled ``bench/load_questions.txt`` (about tests/data/news).

``--ingest DIR`` also uploads up to ``--ingest-count`` articles of DIR (its readable files, sorted by path) through
the UI's upload box while the users ask, one at a time as the UI writes, the way the page does it (Gradio's file
upload then its queue: the Gradio client cannot call the page's private events); the users then ask about the
articles being uploaded every other question and keep asking until the last upload is done. Every answer that
shows an article uploaded by this run (cited, retrieved, or collapsed as an identical passage) is checked: it must
not come before the article's upload began; one that comes while the upload is still running must name an article
the index has committed by then (the article list, read after the answer arrived); and at the end each of its
passages and citations must be a span of the whole article as uploaded (``text == article[start:end]``), of that
version (the content hash in the chunk id) and of a chunk the committed article has. Each (answer, article) that
fails counts as a half article. Articles already indexed when the run starts are uploaded but not checked.

Prints requests, errors (the first few), throughput, p50/p95/p99 latency of the answered requests, the worst
user's p95 and per-user request counts (fairness), and the server's RSS at start and end (PID from ``--pid``
or the port); with ``--ingest``, the uploads and the checks, then ``uploads=U upload_errors=E half_articles=H``;
then, as its last line::

    users=N requests=R errors=E p50_ms=A p95_ms=B rss_start_mb=C rss_end_mb=D

Asserts nothing. Bars of issue #15: extractive, 16 users for 60 s: 0 errors, p95 under 1 s, RSS growth under
10%; LLM mode, 4 users for 120 s: 0 errors and no user starved (the worst user's p95); 200 articles uploaded
while 8 users ask: 0 errors, no question ever sees half an article.
"""

from __future__ import annotations

import argparse
import base64
import html
import http.client
import json
import math
import os
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

BUNDLED_QUESTIONS = Path(__file__).resolve().parent / "load_questions.txt"
API_NAME = "/ask"  # the Gradio API
HTTP_PATH = "/api/ask"  # the plain JSON API (rag.web.http_api)
APIS = ("auto", "http", "gradio")
REQUEST_TIMEOUT_S = 300.0  # one answer or one upload; generous enough for a slow LLM behind a full queue
ERRORS_SHOWN = 3  # distinct error messages printed
TCP_LISTEN = "0A"  # the state column of /proc/net/tcp for a listening socket
KIB_PER_MB = 1024
MS = 1000.0  # milliseconds a second
RECENT_UPLOADS = 3  # --ingest: the users ask about the titles of the last few uploads begun
UPLOAD_BOX = ("upload", "upload")  # the elem_id of the Articles tab's upload box and the event that ingests
STATUS_ITEM = re.compile(r'<li class="(ok|bad)">(.*?)</li>', re.S)
SAVED_AS = re.compile(r"\(saved as (.+?)\)")


@dataclass(frozen=True)
class Outcome:
    """One request: which user sent it, how long it took, and its error ("" when it was answered)."""

    user: int
    seconds: float
    error: str = ""


class Budget:
    """The shared bound on the run: a deadline and, optionally, a number of requests; ``hold`` (when given) keeps
    the run going past the deadline while it returns True (an ingestion still under way)."""

    def __init__(self, seconds: float, max_requests: Optional[int], hold: Optional[Callable[[], bool]] = None):
        self.deadline = time.monotonic() + seconds
        self.left = max_requests
        self.hold = hold
        self._lock = threading.Lock()

    def take(self) -> bool:
        """True (and one request fewer left) while time and requests remain."""
        with self._lock:
            late = time.monotonic() >= self.deadline and not (self.hold and self.hold())
            if late or self.left == 0:
                return False
            if self.left is not None:
                self.left -= 1
            return True


def is_loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine (127.0.0.0/8, ::1 or localhost), by the app's own rule."""
    from rag.web.serve import is_loopback as host_is_loopback

    host = urlsplit(url).hostname
    return bool(host) and host_is_loopback(host)


def default_questions() -> Path:
    """The BBC dev questions under RAG_EVAL_DATA when present, else the bundled file."""
    from rag.core.settings import Settings

    dev = Settings().eval_data / "bbc_dev_qa.jsonl"
    return dev if dev.is_file() else BUNDLED_QUESTIONS


def configured_login() -> Optional[tuple[str, str]]:
    """The app's login from the RAG_* settings (what ``python ui.py`` asks for), or None."""
    from rag.core.settings import Settings
    from rag.web.serve import login

    return login(Settings())


def read_questions(path: Path) -> list[str]:
    """Questions from a JSONL file (a "question" field per line) or a text file (one per line)."""
    questions = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("{"):
            line = str(json.loads(line).get("question", "")).strip()
        if line:
            questions.append(line)
    return questions


def listening_pid(port: int) -> Optional[int]:
    """The PID of the local process listening on TCP ``port``, from /proc (None when not visible to us)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == TCP_LISTEN and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    return None


def rss_mb(pid: Optional[int]) -> Optional[float]:
    """Resident memory of ``pid`` in MB (VmRSS), or None when unknown."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / KIB_PER_MB
    except OSError:
        pass
    return None


# --- asking ----------------------------------------------------------------------------------------------------
def failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


class HttpAsker:
    """One user's keep-alive connection to ``POST /api/ask`` (a new one after the server closes it)."""

    def __init__(self, url: str, auth: Optional[tuple[str, str]]):
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname, parts.port or 80, parts.path.rstrip("/") + HTTP_PATH
        self.headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}  # no compression to undo
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"
        self.conn: Optional[http.client.HTTPConnection] = None

    def post(self, body: dict) -> tuple[int, bytes]:
        """Send ``body``; the status and the reply (OSError or HTTPException when the connection fails)."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)
        try:
            self.conn.request("POST", self.path, json.dumps(body).encode(), self.headers)
            response = self.conn.getresponse()
            data = response.read()
        except BaseException:
            self.close()
            raise
        if response.will_close:
            self.close()
        return response.status, data

    def ask(self, question: str, mode: Optional[str]) -> tuple[str, Optional[dict]]:
        """Ask one question: ("", the Answer as a dict), or (what went wrong, None)."""
        try:
            status, data = self.post({"question": question} if mode is None else {"question": question, "mode": mode})
        except (OSError, http.client.HTTPException) as exc:
            return failure(exc), None
        try:
            reply = json.loads(data)
        except ValueError:
            return f"HTTP {status}, not JSON: {data[:80]!r}", None
        if status != 200:
            message = reply.get("error", "") if isinstance(reply, dict) else ""
            return f"HTTP {status}: {message or str(reply)[:80]}", None
        if not isinstance(reply, dict) or "text" not in reply:
            return f"unexpected reply: {str(reply)[:80]}", None
        return "", reply

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class GradioAsker:
    """One user's ``gradio_client`` Client, asking through the Gradio API ``/ask``."""

    def __init__(self, url: str, auth: Optional[tuple[str, str]]):
        from gradio_client import Client

        self.client = Client(url, auth=auth, verbose=False, download_files=False, analytics_enabled=False)

    def ask(self, question: str, mode: Optional[str]) -> tuple[str, Optional[dict]]:
        kwargs = {"question": question} if mode is None else {"question": question, "mode": mode}
        try:
            reply = self.client.submit(api_name=API_NAME, **kwargs).result(timeout=REQUEST_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 -- every failure of a request is an error to count, not a crash
            return failure(exc), None
        if not isinstance(reply, (list, tuple)) or len(reply) != 2:
            return f"unexpected reply: {str(reply)[:80]}", None
        try:
            return "", json.loads(reply[1])
        except (TypeError, ValueError):
            return f"answer is not JSON: {str(reply[1])[:80]}", None

    def close(self) -> None:
        self.client.close()


def probe_http_api(url: str, auth: Optional[tuple[str, str]]) -> int:
    """The status ``POST /api/ask`` gives an empty body: 400 when served, 401 without the login, 404 or 405 when
    the app has no such route (OSError or HTTPException when nothing answers)."""
    asker = HttpAsker(url, auth)
    try:
        return asker.post({})[0]
    finally:
        asker.close()


# --- uploading through the page, and checking what the users see of the uploads ---------------------------------
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
        self.thread.start()

    def running(self) -> bool:
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
        self.uploader.close()
        self.lister.close()


# --- the run ---------------------------------------------------------------------------------------------------
def simulate_user(user: int, asker, questions: list[str], start: int, mode: Optional[str], budget: Budget,
                  outcomes: list[Outcome], ingest: Optional[IngestRun] = None) -> None:
    """One user: ask questions in order from ``start`` (wrapping round) while the budget lasts; with ``ingest``,
    every other question is about an article being uploaded, and each answer is checked."""
    i = start
    while budget.take():
        question = (ingest.question(i) if ingest else None) or questions[i % len(questions)]
        began = time.perf_counter()
        error, answer = asker.ask(question, mode)
        outcomes.append(Outcome(user, time.perf_counter() - began, error))
        if ingest is not None and answer is not None:
            ingest.observe(answer, time.monotonic())
        i += 1


def run_load(askers: list, questions: list[str], mode: Optional[str], seconds: float,
             max_requests: Optional[int], ingest: Optional[IngestRun] = None) -> tuple[list[Outcome], float]:
    """Run every user to the end of the budget (and of the uploads): the outcomes and the elapsed seconds."""
    outcomes: list[Outcome] = []  # list.append is atomic: the threads share it without a lock
    budget = Budget(seconds, max_requests, ingest.running if ingest else None)
    began = time.perf_counter()
    threads = [
        threading.Thread(target=simulate_user, name=f"user-{u}", daemon=True,
                         args=(u, asker, questions, u * len(questions) // len(askers), mode, budget, outcomes, ingest))
        for u, asker in enumerate(askers)
    ]
    if ingest is not None:
        ingest.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if ingest is not None:
        ingest.thread.join()
    return outcomes, time.perf_counter() - began


def whole(value: Optional[float], scale: float = 1.0) -> str:
    """``value * scale`` as a whole number ("nan" when unknown): milliseconds from seconds, megabytes."""
    return "nan" if value is None else f"{value * scale:.0f}"


def report(users: int, outcomes: list[Outcome], elapsed: float, rss: tuple[Optional[float], Optional[float]],
           ingest: Optional[IngestRun] = None) -> None:
    """Print the figures, then the one summary line."""
    from rag.eval import percentile

    answered = [o.seconds for o in outcomes if not o.error]
    errors = [o.error for o in outcomes if o.error]
    print(f"requests      {len(outcomes)} in {elapsed:.1f} s, {len(errors)} errors")
    for message in list(dict.fromkeys(errors))[:ERRORS_SHOWN]:
        print(f"  error: {message}")
    print(f"throughput    {len(outcomes) / elapsed if elapsed else 0:.1f} req/s")
    p50, p95, p99 = (percentile(answered, q) for q in (50, 95, 99))
    p50_ms, p95_ms, p99_ms = (whole(p, MS) for p in (p50, p95, p99))
    print(f"latency       p50 {p50_ms} ms   p95 {p95_ms} ms   p99 {p99_ms} ms   (answered requests)")
    per_user = {u: [o.seconds for o in outcomes if o.user == u and not o.error] for u in range(users)}
    counts = [sum(o.user == u for o in outcomes) for u in range(users)]
    worst = max(per_user, key=lambda u: percentile(per_user[u], 95) or 0.0)
    print(f"worst user    p95 {whole(percentile(per_user[worst], 95), MS)} ms (user {worst})")
    print(f"per user      min {min(counts)}  max {max(counts)} requests")
    start, end = rss
    growth = f"  ({(end - start) / start * 100:+.1f}%)" if start and end is not None else ""
    print(f"server RSS    start {whole(start)} MB   end {whole(end)} MB{growth}")
    if ingest is not None:
        ingest.report()
    print(f"users={users} requests={len(outcomes)} errors={len(errors)} p50_ms={p50_ms} p95_ms={p95_ms} "
          f"rss_start_mb={whole(start)} rss_end_mb={whole(end)}")


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:7860", help="the running app (loopback only)")
    parser.add_argument("--users", type=int, default=4, help="concurrent simulated users")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to send requests")
    parser.add_argument("--max-requests", type=int, default=None, help="stop after this many requests in all")
    parser.add_argument("--questions", type=Path, default=None,
                        help="JSONL with a 'question' field, or one question a line (default: the BBC dev set)")
    parser.add_argument("--mode", choices=("extractive", "llm"), default=None, help="default: the app's own")
    parser.add_argument("--api", choices=APIS, default="auto",
                        help="http: POST /api/ask; gradio: the Gradio API /ask (gradio_client); "
                             "auto (default): http when the app serves /api/ask, else gradio")
    parser.add_argument("--pid", type=int, default=None, help="the server's PID (default: found from the port)")
    parser.add_argument("--ingest", type=Path, default=None, metavar="DIR",
                        help="also upload the articles of DIR through the UI while the users ask")
    parser.add_argument("--ingest-count", type=int, default=200, help="upload at most this many (default 200)")
    args = parser.parse_args(argv)
    if args.users < 1 or args.seconds <= 0 or (args.max_requests is not None and args.max_requests < 1):
        parser.error("--users, --seconds and --max-requests must be positive")
    if args.ingest is not None and (not args.ingest.is_dir() or args.ingest_count < 1):
        parser.error("--ingest needs a folder and a positive --ingest-count")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    """Drive the app at ``--url`` and print the figures; 2 for a non-loopback URL, 1 when it cannot connect."""
    args = parse_args(argv)
    if not is_loopback(args.url):
        print(f"load.py drives only a server on this machine: {args.url} is not a loopback address "
              "(use 127.0.0.1, ::1 or localhost)", file=sys.stderr)
        return 2
    path = args.questions or default_questions()
    questions = read_questions(path)
    if not questions:
        print(f"no questions in {path}", file=sys.stderr)
        return 1
    uploads = load_uploads(args.ingest, args.ingest_count) if args.ingest else []
    if args.ingest and not uploads:
        print(f"no readable articles in {args.ingest}", file=sys.stderr)
        return 1
    auth = configured_login()
    askers: list = []
    try:
        status = probe_http_api(args.url, auth) if args.api != "gradio" else 0
        if status == 401:
            print(f"the app at {args.url} asks for a login: set RAG_USERNAME and RAG_PASSWORD to its own",
                  file=sys.stderr)
            return 1
        if args.api == "http" and status != 400:
            print(f"the app at {args.url} does not serve POST {HTTP_PATH} (HTTP {status}): use --api gradio",
                  file=sys.stderr)
            return 1
        api = "http" if status == 400 else "gradio"
        for _ in range(args.users):
            askers.append(HttpAsker(args.url, auth) if api == "http" else GradioAsker(args.url, auth))
        ingest = IngestRun(PageSession(args.url, auth), PageSession(args.url, auth), uploads) if uploads else None
    except Exception as exc:  # noqa: BLE001 -- any failure to connect ends the run with one clear line
        print(f"cannot reach the app at {args.url}: {failure(exc)}", file=sys.stderr)
        return 1
    pid = args.pid or listening_pid(urlsplit(args.url).port or 80)
    if pid is None:
        print("server PID not found from the port: RSS not measured (give --pid)")
    endpoint = HTTP_PATH if api == "http" else API_NAME
    print(f"load: {args.users} users, {args.seconds:g} s, {args.url}{endpoint} ({api} API), mode "
          f"{args.mode or 'default'}, {len(questions)} questions from {path}, server PID {pid or 'unknown'}"
          + (f"; uploading {len(uploads)} articles of {args.ingest}" if ingest else ""))
    rss_start = rss_mb(pid)
    try:
        outcomes, elapsed = run_load(askers, questions, args.mode, args.seconds, args.max_requests, ingest)
        if ingest is not None:
            ingest.verify()
    finally:
        for asker in askers:
            asker.close()
    report(args.users, outcomes, elapsed, (rss_start, rss_mb(pid)), ingest)
    if ingest is not None:
        ingest.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
