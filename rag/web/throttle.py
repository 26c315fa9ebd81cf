"""Rate-limiting failed logins: an ASGI middleware in front of Gradio's login form and the HTTP API.

Gradio checks a password as often as it is asked, so a login is only as strong as the number of guesses an
attacker gets. After ``attempts`` failed logins from one address within ``window`` seconds, further logins from it
are answered 429 (with ``Retry-After``) without being checked, until the oldest failure is ``window`` seconds old.
A failure is a refused ``POST`` to Gradio's ``/login`` (400 or 401) or a ``POST /api/ask`` answered 401 although
it carried credentials. Written by hand: Gradio has no such limit and the limiter libraries for Starlette count
requests, not failures. Starlette only, no Gradio.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from starlette.responses import JSONResponse

LOGIN_SUFFIX = "/login"
API_PATH = "/api/ask"
MAX_TRACKED = 10_000  # addresses remembered at once; expired ones are dropped first


class LoginThrottle:
    """The middleware (``starlette.middleware.Middleware(LoginThrottle, attempts=5, window=60)``)."""

    def __init__(self, app, attempts: int = 5, window: float = 60.0):
        self.app = app
        self.attempts = attempts
        self.window = window
        self.failures: dict[str, deque[float]] = {}
        self.lock = threading.Lock()

    def wait_for(self, address: str, now: float) -> float:
        """Seconds before ``address`` may try again (0 when it may now)."""
        with self.lock:
            times = self.failures.get(address)
            while times and now - times[0] >= self.window:
                times.popleft()
            if not times or len(times) < self.attempts:
                return 0.0
            return self.window - (now - times[0])

    def failed(self, address: str, now: float) -> None:
        """Count a failed login from ``address``."""
        with self.lock:
            if len(self.failures) >= MAX_TRACKED:
                self.failures = {a: t for a, t in self.failures.items() if t and now - t[-1] < self.window}
            self.failures.setdefault(address, deque(maxlen=self.attempts)).append(now)

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "") if scope["type"] == "http" else ""
        is_login = path.rstrip("/").endswith(LOGIN_SUFFIX)
        if scope.get("method") != "POST" or not (is_login or path == API_PATH):
            await self.app(scope, receive, send)
            return
        address = (scope.get("client") or ("unknown", 0))[0]
        wait = self.wait_for(address, time.monotonic())
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            message = f"too many failed logins from this address; try again in {seconds} s"
            refusal = JSONResponse({"error": message, "detail": message}, status_code=429,
                                   headers={"Retry-After": str(seconds)})
            await refusal(scope, receive, send)
            return
        sent_credentials = any(name == b"authorization" for name, _ in scope.get("headers", []))
        status: list[int] = []

        async def watch(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        refused = status and (status[0] in (400, 401) if is_login else status[0] == 401 and sent_credentials)
        if refused:
            self.failed(address, time.monotonic())
