"""A read-only data folder: ingesting into it stops at once with a clear error naming the folder, and the index
already in it still answers, through the API and the CLIs. The folder is bind-mounted read-only over itself, which
binds even root (needs permission to mount: skipped otherwise)."""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.app import open_services
from rag.core.errors import IndexProblem
from tests.conftest import make_settings

QUESTION = "Which company agreed to buy Castellan?"
ARTICLES = ("velorum-castellan-deal.txt", "castellan-deal-jobs.txt", "halden-air-strike.txt")
CLI_TIMEOUT = 240  # seconds: a CLI that hangs on the read-only folder fails the test instead of blocking it


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


RETRIES = 20  # remount attempts, half a second apart


def _open_files(folder) -> list[str]:
    """Files under ``folder`` that a process holds open, as "pid: path" (from /proc; empty where unreadable)."""
    held = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            links = [(fd, os.readlink(fd)) for fd in fd_dir.iterdir()]
        except OSError:
            continue
        held += [f"{fd_dir.parent.name}: {target}" for fd, target in links if target.startswith(str(folder))]
    return held


@pytest.fixture
def data_mount(tmp_path):
    """``(folder, make_read_only)``: a data folder bind-mounted over itself, writable until ``make_read_only()``
    remounts it read-only; unmounted afterwards."""
    folder = tmp_path / "data"
    folder.mkdir()
    done = _mount("--bind", str(folder), str(folder))
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here ({done.stderr.strip() or done.returncode}): no read-only folder to try")

    def make_read_only() -> None:
        # The kernel refuses ("mount point is busy") while any file under the folder is open for writing; a
        # handle the store let go can take a moment to close (the cause is not known), so try
        # for a few seconds, and name whatever still holds a file open if it never lets go.
        for _ in range(RETRIES):
            done = _mount("-o", "remount,bind,ro", str(folder))
            if done.returncode == 0:
                return
            gc.collect()
            time.sleep(0.5)
        assert done.returncode == 0, (
            f"bind-mounted, but cannot remount read-only: {done.stderr.strip()}; open under it: {_open_files(folder)}")

    try:
        yield folder, make_read_only
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_read_only_data_folder_refuses_ingest_clearly_and_still_answers(
    data_mount, tmp_path, embedder, test_corpus, subprocess_env
):
    data, make_read_only = data_mount
    articles = tmp_path / "articles"
    articles.mkdir()
    for name in ARTICLES:
        shutil.copy(test_corpus / "business" / name, articles)
    new = tmp_path / "new"
    new.mkdir()
    shutil.copy(test_corpus / "business" / "cardell-mortgage-rates.txt", new)

    settings = make_settings(data)
    services = open_services(settings, embedder=embedder)
    assert len(services.ingestor.ingest([articles], progress=False).added) == len(ARTICLES)
    before = services.pipeline.ask(QUESTION, mode="extractive")
    assert "Velorum" in before.text and before.citations
    stored = {r.article_id for r in services.store.all_articles()}
    services.store.close()  # Chroma holds its database open for writing: the mount is busy until it is let go
    del services
    gc.collect()

    make_read_only()
    with pytest.raises(OSError):  # the mount binds even root
        (data / "probe").write_text("x")
    index_folder = str(data / "chroma")

    services = open_services(settings, embedder=embedder)
    answer = services.pipeline.ask(QUESTION, mode="extractive")
    assert answer.text == before.text and answer.citations == before.citations
    started = time.monotonic()
    with pytest.raises(IndexProblem, match="is read-only") as caught:
        services.ingestor.ingest([new], progress=False)
    assert time.monotonic() - started < 60  # stopped, not hung
    assert index_folder in str(caught.value) and "\n" not in str(caught.value)
    assert {r.article_id for r in services.store.all_articles()} == stored
    assert services.pipeline.ask(QUESTION, mode="extractive").text == before.text
    services.store.close()

    env = subprocess_env(data)
    done = subprocess.run([sys.executable, "-m", "ingest", "--quiet", str(new)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=CLI_TIMEOUT)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert len(errors) == 1 and index_folder in errors[0] and "is read-only" in errors[0], done.stderr

    done = subprocess.run([sys.executable, "-m", "rag", "ask", QUESTION, "--json", "--mode", "extractive",
                           "--index", str(data)], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert json.loads(done.stdout)["text"] == before.text


def test_no_index_folder_can_be_made_in_a_read_only_data_folder(data_mount, embedder):
    data, make_read_only = data_mount
    make_read_only()
    settings = make_settings(data / "fresh")
    with pytest.raises(IndexProblem, match=r"cannot be created \(Read-only file system\)") as caught:
        open_services(settings, embedder=embedder)
    assert str(settings.chroma_dir) in str(caught.value)
