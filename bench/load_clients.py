"""The clients bench/load.py asks the running app with, one per simulated user: ``HttpAsker`` (the plain JSON API,
``POST /api/ask``, over one keep-alive connection) and ``GradioAsker`` (the Gradio API ``/ask``, through
``gradio_client``); ``probe_http_api`` tells whether the app serves the first. Each ``ask`` returns ("", the answer)
or, for a failed request, (what went wrong, None).
"""

from __future__ import annotations

import base64
import http.client
import json
from typing import Optional
from urllib.parse import urlsplit

API_NAME = "/ask"  # the Gradio API
HTTP_PATH = "/api/ask"  # the plain JSON API (rag.web.http_api)
REQUEST_TIMEOUT_S = 300.0  # one answer or one upload; generous enough for a slow LLM behind a full queue
ERRORS_SHOWN = 3  # distinct error messages a report prints


def failure(exc: BaseException) -> str:
    """What went wrong, as one error message: the exception's type and text."""
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
        """Close the connection (the next request opens a new one)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class GradioAsker:
    """One user's ``gradio_client`` Client, asking through the Gradio API ``/ask``."""

    def __init__(self, url: str, auth: Optional[tuple[str, str]]):
        from gradio_client import Client

        self.client = Client(url, auth=auth, verbose=False, download_files=False, analytics_enabled=False)

    def ask(self, question: str, mode: Optional[str]) -> tuple[str, Optional[dict]]:
        """Ask one question: ("", the Answer as a dict), or (what went wrong, None)."""
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
        """Close the client."""
        self.client.close()


def probe_http_api(url: str, auth: Optional[tuple[str, str]]) -> int:
    """The status ``POST /api/ask`` gives an empty body: 400 when served, 401 without the login, 404 or 405 when
    the app has no such route (OSError or HTTPException when nothing answers)."""
    asker = HttpAsker(url, auth)
    try:
        return asker.post({})[0]
    finally:
        asker.close()

