"""The web UI's Gradio-free parts: HTML rendering, chat turns, the article library, and the static CSS/JS.

``ui.py`` (the Gradio app) wires these to the page; each module here can be used and tested without Gradio.
"""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"  # installed as package data (pyproject.toml)


def static_text(name: str) -> str:
    """The text of the static file ``name`` (CSS or JavaScript handed to Gradio)."""
    return (STATIC_DIR / name).read_text(encoding="utf-8")
