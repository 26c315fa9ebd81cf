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

This file parses the command line, runs the users and reports the figures; the clients they ask with are in
``bench/load_clients.py``, the uploads through the page and the half-article checks in ``bench/load_ingest.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from bench.load_clients import (  # noqa: E402 (after the project root is on sys.path)
    API_NAME, ERRORS_SHOWN, HTTP_PATH, GradioAsker, HttpAsker, failure, probe_http_api)
from bench.load_ingest import IngestRun, PageSession, load_uploads  # noqa: E402

BUNDLED_QUESTIONS = Path(__file__).resolve().parent / "load_questions.txt"
APIS = ("auto", "http", "gradio")
TCP_LISTEN = "0A"  # the state column of /proc/net/tcp for a listening socket
KIB_PER_MB = 1024
MS = 1000.0  # milliseconds a second


@dataclass(frozen=True)
class Outcome:
    """One request: which user sent it, how long it took, and its error ("" when it was answered)."""

    user: int
    seconds: float
    error: str = ""
    in_line: Optional[float] = None  # seconds it waited for the reader model (LLM answers; from Answer.timings)


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
        timings = (answer or {}).get("timings") or {}
        outcomes.append(Outcome(user, time.perf_counter() - began, error, timings.get("queue")))
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
    waits = {u: [o.in_line for o in outcomes if o.user == u and o.in_line is not None] for u in range(users)}
    if any(waits.values()):  # fairness: the model's turns each user got, and how long each waited for them
        turns = [len(w) for w in waits.values()]
        everyone = [w for ws in waits.values() for w in ws]
        longest = max(percentile(w, 95) or 0.0 for w in waits.values())
        print(f"model turns   per user min {min(turns)}  max {max(turns)}; in line p50 {percentile(everyone, 50):.1f} s"
              f"  p95 {percentile(everyone, 95):.1f} s  worst user's p95 {longest:.1f} s")
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
