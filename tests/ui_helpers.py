"""Shared by the web UI tests: the test strings about the seed article, starting `python ui.py` on an index of
its own, the headless Chromium fixture, and the page actions every browser test uses.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import stop_process

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SEED_ID = "catl-baic-xiaomi-battery-jv.txt"
SEED_TITLE = "CATL, BAIC, and Xiaomi to build a battery factory in Beijing"
QUESTION = "Who holds the majority stake?"
MAJORITY = "CATL will hold a majority stake of 51%, followed by BAIC with 39% and Xiaomi Auto with 5%."


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Wait until ``proc`` (a `python ui.py` writing to ``log``) accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ui.py exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"ui.py did not open port {port} in {timeout} s:\n{log.read_text()[-4000:]}")


def ui_env(data: Path, corpus: Path, port: int, **extra: str) -> dict:
    """The environment of a `python ui.py` child: no RAG_* setting of the calling shell, an extractive app on
    loopback serving the index in ``data`` (the articles of ``corpus`` ingested into an empty one); ``extra`` wins."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_DATA_DIR=str(data), RAG_CORPUS_DIR=str(corpus), RAG_HOST="127.0.0.1", RAG_PORT=str(port),
        RAG_LLM="none", RAG_ANSWER_MODE="extractive", RAG_SHARE="false", GRADIO_ANALYTICS_ENABLED="False",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def start_ui(env: dict, log: Path) -> subprocess.Popen:
    """`python ui.py` with ``env`` (its output appended to ``log``), once it serves on ``RAG_PORT``."""
    with log.open("a") as out:
        proc = subprocess.Popen([sys.executable, "ui.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(int(env["RAG_PORT"]), proc, log)
    except BaseException:
        stop_process(proc)
        raise
    return proc


def seed_corpus(folder: Path) -> Path:
    """``folder`` holding only the seed article (the smallest corpus the app starts on)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "corpus" / SEED_ID, folder / SEED_ID)
    return folder


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    chromium = pw.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
    )
    yield chromium
    chromium.close()
    pw.stop()


def open_page(browser, url: str):
    """A page of its own browser context (so its own Gradio session) at ``url``; close its ``.context``."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    return page


def ask(page, question: str) -> None:
    """Type a question, press Enter and wait until its answer and evidence are shown."""
    box = page.locator("#question textarea")
    box.fill(question)
    box.press("Enter")
    page.wait_for_function(
        "q => (document.querySelector('#evidence') || {}).textContent.includes(q)", arg=question
    )


def last_answer(page):
    return page.locator("#chat .answer").last


def wait_text(page, selector: str, text: str, present: bool = True) -> None:
    """Wait until the element's visible text includes (or no longer includes) ``text``."""
    page.wait_for_function(
        "([s, t, p]) => { const e = document.querySelector(s); return !!e && e.innerText.includes(t) === p; }",
        arg=[selector, text, present],
    )
