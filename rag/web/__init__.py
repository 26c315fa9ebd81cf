"""The web UI's parts: HTML rendering, chat turns, the article library and its crash-safe uploads folder, the
Gradio event handlers, serving, and the static CSS/JS.

``ui.py`` (the Gradio app) lays out the page and wires these to it. Only :mod:`rag.web.callbacks` and
:func:`rag.web.serve.launch` use Gradio; the other modules can be used and tested without it.
"""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"  # installed as package data (pyproject.toml)


def static_text(name: str) -> str:
    """The text of the static file ``name`` (CSS or JavaScript handed to Gradio)."""
    return (STATIC_DIR / name).read_text(encoding="utf-8")
