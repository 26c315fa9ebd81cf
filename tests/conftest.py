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
# The small corpus written for the tests (no third-party text): news-style articles with near-duplicates,
# an HTML, a PDF and a cp1252 file, and a question set over them (two unanswerable).
TEST_CORPUS = REPO_ROOT / "tests" / "data" / "news"
TEST_QUESTIONS = REPO_ROOT / "tests" / "data" / "news_qa.jsonl"


def eval_data_dir() -> Path:
    """Where the large evaluation corpora live: the one ``eval_data`` setting (``RAG_EVAL_DATA``)."""
    from rag.core.settings import Settings

    return Settings(_env_file=None).eval_data


def require_eval_data(*parts: str) -> Path:
    """``eval_data/<parts>`` if it exists; else skip with one line saying what is missing and how to point at it.

    With ``RAG_REQUIRE_EVAL_DATA=1`` (set by ``.ci/run`` when the data is there) a missing path fails the test
    instead, so CI never passes by silently skipping the quality runs.
    """
    path = eval_data_dir().joinpath(*parts)
    if path.exists():
        return path
    message = f"evaluation data not found: {path} (set RAG_EVAL_DATA to the folder holding bbc/ and realtimeqa/)"
    if os.environ.get("RAG_REQUIRE_EVAL_DATA") == "1":
        pytest.fail(message + "; RAG_REQUIRE_EVAL_DATA=1 requires it")
    pytest.skip(message)


def make_settings(data_dir: Path, **overrides):
    """A Settings whose index lives under ``data_dir``; ``.env`` is ignored, keyword overrides win."""
    from rag.core.settings import Settings

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
    from rag.index.embedder import Embedder

    return Embedder(make_settings(tmp_path_factory.mktemp("embedder-settings")))


@pytest.fixture
def store_factory(embedder):
    """``store_factory(settings)``: a real Chroma-backed Store sharing the session's embedder."""
    from rag.index.store import Store

    def factory(settings):
        return Store(settings, embedder)

    return factory


@pytest.fixture
def store(tmp_settings, store_factory):
    """A Store on a fresh on-disk Chroma index under tmp_path."""
    return store_factory(tmp_settings)


@pytest.fixture(scope="session")
def bbc_dir() -> Path:
    """The BBC evaluation corpus (read-only; never copy it into the repository), or a skip saying it is missing."""
    return require_eval_data("bbc", "sport").parent


@pytest.fixture(scope="session")
def test_corpus() -> Path:
    """The repository's own small test corpus (read-only: copy it before changing files)."""
    return TEST_CORPUS


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

