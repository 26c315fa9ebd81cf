"""Serving the Gradio app as configured: address, port, login, limits, theme and a warning when the app is
reachable from other machines without a login; with a pipeline, the plain HTTP API ``POST /api/ask``
(:mod:`rag.web.http_api`) on the same server, behind the same login. Gradio is imported only to launch, so the
checks run before the app is built."""

from __future__ import annotations

import ipaddress
import logging
from typing import Optional

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


def exposure_warning(settings: Settings) -> str:
    """A warning when other machines can reach the app and no login protects it ("" otherwise)."""
    if login(settings) is not None:
        return ""
    if not is_loopback(settings.host):
        reach, instead = f"RAG_HOST={settings.host} lets other machines reach the app", "serve on RAG_HOST=127.0.0.1"
    elif settings.share:
        reach, instead = "RAG_SHARE makes a public link to the app", "set RAG_SHARE=false"
    else:
        return ""
    return (f"{reach}, and no login is set: anyone who reaches it can ask, upload and delete articles. "
            f"Set RAG_USERNAME and RAG_PASSWORD, or {instead}.")


def launch(demo, settings: Settings, pipeline=None, **kwargs):
    """Serve the Gradio app ``demo`` as configured: host, port, optional login, share link only when asked for.

    With ``pipeline``, ``POST /api/ask`` answers with it (:mod:`rag.web.http_api`): its route goes into the
    FastAPI app Gradio builds (``app_kwargs``), so the one server of ``demo.launch`` serves both (share link and
    ``demo.close()`` included). It asks for the same username and password as the page and the Gradio API (which
    take them through Gradio's login form and its session cookie; ``/api/ask`` through HTTP Basic auth).
    """
    import gradio as gr

    auth = login(settings)
    if auth is None and (settings.username or settings.password):
        log.warning("both RAG_USERNAME and RAG_PASSWORD are needed for a login; serving without one")
    if pipeline is not None:
        from rag.web.http_api import routes

        app_kwargs = dict(kwargs.pop("app_kwargs", None) or {})
        app_kwargs["routes"] = [*app_kwargs.get("routes", []), *routes(pipeline, auth, settings.ui_concurrency)]
        kwargs["app_kwargs"] = app_kwargs
    # Questions run ui_concurrency at a time; uploads and deletions one at a time (concurrency_id "write").
    demo.queue(default_concurrency_limit=settings.ui_concurrency)
    return demo.launch(
        server_name=settings.host, server_port=settings.port, auth=auth, share=settings.share,
        max_file_size=max(1, int(settings.max_upload_mb * 1024 * 1024)), css=static_text("app.css"),
        theme=gr.themes.Default(primary_hue="blue", font=FONT, font_mono=MONO),
        footer_links=["api"], show_error=False, **kwargs,
    )
