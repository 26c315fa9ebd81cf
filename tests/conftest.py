"""Shared pytest fixtures: isolated Settings under tmp_path, one embedding model per session, real Chroma stores.

Everything is real (embedding model, Chroma on disk); nothing is mocked. Settings built here ignore any
``.env`` file and always point the index at a fresh folder, so a developer's own index is never touched.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import Callable

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BBC_DIR = (REPO_ROOT / ".." / "shared" / "data" / "bbc").resolve()


def make_settings(data_dir: Path, **overrides):
    """A Settings whose index lives under ``data_dir``; ``.env`` is ignored, keyword overrides win."""
    from rag.settings import Settings

    fields = {"data_dir": data_dir, "chroma_path": None, "chroma_host": None, "collection": "news"}
    fields.update(overrides)
    return Settings(_env_file=None, **fields)


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Terminate a server process started by a test, killing it if it does not exit within ``timeout``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def settings_at() -> Callable[..., object]:
    """``settings_at(data_dir, **overrides)``: :func:`make_settings` for fixtures of any scope."""
    return make_settings


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., object]:
    """``settings_factory(name="data", **overrides)``: a Settings with ``data_dir = tmp_path / name``."""

    def factory(name: str = "data", **overrides):
        return make_settings(tmp_path / name, **overrides)

    return factory


@pytest.fixture
def tmp_settings(settings_factory):
    """Default Settings with the index in a fresh folder under tmp_path."""
    return settings_factory()


@pytest.fixture(scope="session")
def embedder(tmp_path_factory):
    """The real embedding model (all-MiniLM-L6-v2), loaded once per test session."""
    from rag.store import Embedder

    return Embedder(make_settings(tmp_path_factory.mktemp("embedder-settings")))


@pytest.fixture
def store_factory(embedder):
    """``store_factory(settings)``: a real Chroma-backed Store sharing the session's embedder."""
    from rag.store import Store

    def factory(settings):
        return Store(settings, embedder)

    return factory


@pytest.fixture
def store(tmp_settings, store_factory):
    """A Store on a fresh on-disk Chroma index under tmp_path."""
    return store_factory(tmp_settings)


@pytest.fixture(scope="session")
def bbc_dir() -> Path:
    """The shared BBC corpus (read-only; never copy it into the repository)."""
    if not (BBC_DIR / "sport").is_dir():
        pytest.skip(f"BBC corpus not found at {BBC_DIR}")
    return BBC_DIR


@pytest.fixture
def subprocess_env() -> Callable[..., dict]:
    """``subprocess_env(data_dir, **extra)``: environment for a ``python -m ...`` child using that index.

    RAG_* variables of the calling shell are dropped so the child sees only what the test sets; the
    repository is put on PYTHONPATH so the child can run from any working directory (e.g. tmp_path, where
    no ``.env`` is read).
    """

    def factory(data_dir: Path, **extra: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
        env["RAG_DATA_DIR"] = str(data_dir)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env.update(extra)
        return env

    return factory

