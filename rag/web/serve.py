"""Serving the Gradio app as configured: address, port, login, limits, queue and theme; with a pipeline, the plain
HTTP API ``POST /api/ask`` (:mod:`rag.web.http_api`) on the same server, behind the same login. The app refuses to
start with half a login, or reachable from other machines (or through a share link) without one, unless
``RAG_ALLOW_OPEN=1`` says the operator means it (:func:`exposure_problem`); failed logins are rate-limited
(:mod:`rag.web.throttle`) and request bodies capped (:mod:`rag.web.body_limit`). Gradio is imported only to
launch, so the checks run before the app is built."""

from __future__ import annotations

import ipaddress
import logging
from typing import Optional

from rag.core.errors import RagError
from rag.core.settings import Settings
from rag.web import static_text

log = logging.getLogger(__name__)

# System fonts only: the app works offline, so it must not fetch web fonts.
FONT = ("ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif")
MONO = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to an address others reach
        return False


def login(settings: Settings) -> Optional[tuple[str, str]]:
    """The (username, password) pair Gradio asks for, or None when the settings give no complete login."""
    if settings.username and settings.password:
        return settings.username, settings.password.get_secret_value()
    return None


class ExposureRefused(RagError):
    """The app would be served with half a login, or open to others without one, and no one said it may."""


def _open_reach(settings: Settings) -> tuple[str, str]:
    """How others could reach the app without a login, and what to set instead (("", "") when they cannot)."""
    if login(settings) is not None:
        return "", ""
    if not is_loopback(settings.host):
        return f"RAG_HOST={settings.host} lets other machines reach the app", "serve on RAG_HOST=127.0.0.1"
    if settings.share:
        return "RAG_SHARE makes a public link to the app", "set RAG_SHARE=false"
    return "", ""


def exposure_problem(settings: Settings) -> str:
    """Why the app must not start as configured ("" when it may): half a login (a username without a password
    or the other way round), or others can reach it without a login and ``allow_open`` is not set."""
    if bool(settings.username) != bool(settings.password):
        given, missing = ("RAG_USERNAME", "RAG_PASSWORD") if settings.username else ("RAG_PASSWORD", "RAG_USERNAME")
        return (f"{given} is set but {missing} is not: the app would run without a login. Set both, or neither "
                "(then it serves this machine only).")
    reach, instead = _open_reach(settings)
    if not reach or settings.allow_open:
        return ""
    return (f"{reach}, and no login is set: anyone who reaches it could ask, upload and delete articles. "
            f"Set RAG_USERNAME and RAG_PASSWORD, or {instead}; or set RAG_ALLOW_OPEN=1 to serve it openly on purpose.")


def exposure_warning(settings: Settings) -> str:
    """A warning when others can reach the app without a login because ``allow_open`` says so ("" otherwise)."""
    reach, _ = _open_reach(settings)
    if not reach or not settings.allow_open:
        return ""
    return (f"{reach}, and no login is set (RAG_ALLOW_OPEN=1): anyone who reaches it can ask, upload and delete "
            "articles.")


def launch(demo, settings: Settings, pipeline=None, **kwargs):
    """Serve the Gradio app ``demo`` as configured: host, port, optional login, share link only when asked for.

    With ``pipeline``, ``POST /api/ask`` answers with it (:mod:`rag.web.http_api`): its route goes into the
    FastAPI app Gradio builds (``app_kwargs``), so the one server of ``demo.launch`` serves both (share link and
    ``demo.close()`` included). It asks for the same username and password as the page and the Gradio API (which
    take them through Gradio's login form and its session cookie; ``/api/ask`` through HTTP Basic auth).
    """
    import gradio as gr
    from starlette.middleware import Middleware

    from rag.web.body_limit import BodyLimit
    from rag.web.http_api import MAX_BODY_BYTES
    from rag.web.throttle import LoginThrottle

    problem = exposure_problem(settings)
    if problem:
        raise ExposureRefused(problem)
    auth = login(settings)
    app_kwargs = dict(kwargs.pop("app_kwargs", None) or {})
    if pipeline is not None:
        from rag.web.http_api import routes

        app_kwargs["routes"] = [*app_kwargs.get("routes", []), *routes(pipeline, auth, settings)]
    middleware = [Middleware(BodyLimit, limit=MAX_BODY_BYTES)]  # a JSON body over 1 MB is refused unread
    if auth is not None:
        middleware.append(Middleware(LoginThrottle, attempts=settings.login_attempts, window=settings.login_window))
    app_kwargs["middleware"] = [*app_kwargs.get("middleware", []), *middleware]
    kwargs["app_kwargs"] = app_kwargs
    # Questions run ui_concurrency at a time; uploads and deletions one at a time (concurrency_id "write"); at most
    # queue_size events wait, and one more is refused at once ("busy, try again").
    demo.queue(default_concurrency_limit=settings.ui_concurrency, max_size=settings.queue_size)
    return demo.launch(
        server_name=settings.host, server_port=settings.port, auth=auth, share=settings.share,
        max_file_size=max(1, int(settings.max_upload_mb * 1024 * 1024)), css=static_text("app.css"),
        theme=gr.themes.Default(primary_hue="blue", font=FONT, font_mono=MONO),
        footer_links=["api"], show_error=False, **kwargs,
    )
