"""``python -m rag ask`` with publish dates and outlets, on the tiny dated index of tests/dated.py.

The CLI runs in this process (its ``main``) on a real index; the plain ask and ``--json`` paths are also run as
a subprocess by tests/test_rag.py and tests/test_eval.py.
"""

from __future__ import annotations

import json
import os

import pytest

from rag.__main__ import main
from tests import dated
from tests.conftest import make_settings


@pytest.fixture(scope="module")
def dated_index(tmp_path_factory, embedder):
    """The data folder of an index of tests/dated.py's articles."""
    from rag.app import open_services

    base = tmp_path_factory.mktemp("cli-dated")
    services = open_services(make_settings(base / "data", llm="none"), embedder=embedder)
    dated.build_dated_index(services, base / "corpus")
    return base / "data"


@pytest.fixture
def ask(dated_index, monkeypatch, capsys):
    """``ask(*args)``: run ``python -m rag ask --index INDEX *args``; (exit status, stdout, stderr)."""
    for name in [n for n in os.environ if n.startswith("RAG_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("RAG_LLM", "none")
    monkeypatch.setenv("RAG_COLLECTION", "news")  # the collection make_settings names

    def run(*args: str) -> tuple[int, str, str]:
        status = main(["ask", "--index", str(dated_index), *args])
        out = capsys.readouterr()
        return status, out.out, out.err

    return run


def test_as_of_and_sources_change_the_cited_article(ask):
    status, out, _ = ask("--json", "--as-of", "2022-06-01", dated.QUESTION)
    answer = json.loads(out)
    assert status == 0 and answer["as_of"] == "2022-06-01"
    assert {c["article_id"] for c in answer["citations"]} == {dated.OLDER}  # the newer one was not yet published
    assert answer["citations"][0]["site"] == "Harbour Herald" and answer["citations"][0]["published"] == "2022-05-10"

    status, out, _ = ask("--source", "coastal times", dated.QUESTION)
    assert status == 0 and "12,400" in out and "9,800" not in out
    title = dated.title_of(dated.NEWER)
    cited = [line for line in out.splitlines() if line.startswith(f"[1] {title} (")]
    assert cited and cited[0].endswith(f"{dated.NEWER}) \u00b7 Coastal Times \u00b7 2022-06-14"), out
    assert "scope: from coastal times" in out

    status, out, _ = ask("--source", "Coastal Times", "--source", "Harbour Herald", "--json", dated.QUESTION)
    assert status == 0 and {c["article_id"] for c in json.loads(out)["citations"]} == {dated.NEWER, dated.OLDER}

    status, out, _ = ask("--as-of", "2022-06-01", "--since", "2022-05-01", dated.QUESTION)
    assert status == 0 and "scope: as of 2022-06-01; published 2022-05-01 to 2022-06-01" in out

    status, out, _ = ask(dated.QUESTION)  # as of today, nothing narrowed: no scope line
    assert status == 0 and "scope:" not in out and "Citations:" in out


@pytest.mark.parametrize("args, message", [
    (["--as-of", "next week"], "error: not a date: 'next week' (expected YYYY-MM-DD)"),
    (["--since", "2022-06-10", "--until", "2022-06-01"], "error: since (2022-06-10) is after until (2022-06-01)"),
])
def test_a_bad_date_is_one_line_and_status_2(ask, args, message):
    status, out, err = ask(*args, dated.QUESTION)
    assert status == 2 and out == ""
    assert err.strip().splitlines()[-1] == message and "Traceback" not in err
