"""The ingest command line (``python -m ingest``): ingest, list and delete, in a process of its own."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ingest_helpers import NEWS_HTML, check_index, paragraph, write


def run_cli(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m ingest *args`` in ``cwd`` with ``env``, its output captured as text."""
    return subprocess.run([sys.executable, "-m", "ingest", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=180)


@pytest.mark.heavy
def test_cli_ingest_list_and_delete(tmp_path, tmp_settings, subprocess_env, store_factory, embedder):
    src = tmp_path / "src"
    write(src / "a.txt", "Grain prices climb\n\n" + paragraph("grain", 10))
    write(src / "b.md", "# Copper strike ends\n\n" + paragraph("copper", 4))
    write(src / "c.html", NEWS_HTML)
    env = subprocess_env(tmp_settings.data_dir)

    first = run_cli([str(src), "--list", "--quiet"], env, tmp_path)
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert "3 files seen, 3 added, 0 updated, 0 unchanged, 0 duplicates, 0 skipped, 0 pruned" in out
    rows = {line.split("\t")[0]: line.split("\t") for line in out.splitlines() if "\t" in line}
    assert sorted(rows) == ["a.txt", "b.md", "c.html"]
    assert rows["a.txt"][1] == "Grain prices climb" and re.fullmatch(r"\d+ chunks", rows["a.txt"][2])
    assert rows["b.md"][1] == "Copper strike ends"
    assert rows["c.html"][1] == "Harbour bridge reopens after repairs"
    assert out.rstrip().endswith("3 articles")

    second = run_cli(["--delete", "a.txt", "--delete", "missing.txt", "--list"], env, tmp_path)
    assert second.returncode == 1
    assert "deleted a.txt" in second.stdout
    assert "no article with id 'missing.txt'" in second.stderr
    listed = [line.split("\t")[0] for line in second.stdout.splitlines() if "\t" in line]
    assert listed == ["b.md", "c.html"] and second.stdout.rstrip().endswith("2 articles")

    store = store_factory(tmp_settings)  # first open in this process: sees the CLI's writes
    assert sorted(check_index(store, embedder)) == ["b.md", "c.html"]
    assert store.chunk_ids("a.txt") == []


@pytest.mark.heavy
def test_cli_delete_of_an_uploaded_article_removes_its_copy(tmp_path, tmp_settings, subprocess_env):
    """The web UI indexes its uploads folder at start: a copy left there would bring a deleted upload back."""
    uploads = tmp_settings.uploads_dir
    write(uploads / "pier.txt", "Pier reopens\n\n" + paragraph("pier", 3))
    write(tmp_path / "src" / "kept.txt", "Kept story\n\n" + paragraph("kept", 3))
    env = subprocess_env(tmp_settings.data_dir)
    assert run_cli([str(uploads), str(tmp_path / "src"), "--quiet"], env, tmp_path).returncode == 0
    done = run_cli(["--delete", "pier.txt", "--delete", "kept.txt"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"deleted pier.txt (and its uploaded copy in {uploads.resolve()})" in done.stdout
    assert "deleted kept.txt\n" in done.stdout  # not an upload: the source file is the user's, and stays
    assert not (uploads / "pier.txt").exists() and (tmp_path / "src" / "kept.txt").exists()
