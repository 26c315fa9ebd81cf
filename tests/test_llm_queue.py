"""Questions take turns at the reader model first come, first served, and a streamed answer says how long it
waits (issue #15: LLM mode under load queues fairly and the UI never hangs mute)."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from rag.app import open_services
from rag.core.settings import PROJECT_ROOT
from rag.core.turns import Turns, Waiting
from rag.core.types import Answer, Reading
from rag.web.callbacks import AskCallbacks
from rag.web.render import waiting_message
from tests.llm_helpers import ScriptedLLM
from tests.llm_servers import fake_ollama  # noqa: F401  (a fixture)
from tests.ui_helpers import browser  # noqa: F401  (a fixture)

SEED_ID = "catl-baic-xiaomi-battery-jv.txt"
QUESTION = "Who holds the majority stake?"
REPLY = "ANSWER: CATL\nPASSAGE: 1"


# --- the line itself ----------------------------------------------------------------------------------------
def test_turns_go_in_the_order_the_tickets_were_taken_not_the_order_threads_wake():
    turns = Turns(1)
    holder = turns.join()
    assert holder.wait(0)
    tickets = [turns.join() for _ in range(5)]
    served: list[int] = []

    def take(i: int) -> None:
        with tickets[i] as ticket:
            assert ticket.wait(10)
            served.append(i)
            time.sleep(0.01)

    threads = [threading.Thread(target=take, args=(i,)) for i in reversed(range(5))]  # the last in line first
    for thread in threads:
        thread.start()
        time.sleep(0.02)  # every thread is waiting before the turn is given up
    holder.release()
    for thread in threads:
        thread.join(10)
    assert served == [0, 1, 2, 3, 4]
    assert turns.busy() == 0


def test_status_says_how_many_are_ahead_and_estimates_the_wait_from_past_turns():
    turns = Turns(1)
    first = turns.join()
    first.wait(0)
    second, third = turns.join(), turns.join()
    assert second.status() == Waiting(1, None) and third.status() == Waiting(2, None)  # nothing timed yet
    time.sleep(0.3)
    first.release()  # one turn of about 0.3 s
    assert second.wait(0) and second.status() == Waiting(0, 0.0)
    waiting = third.status()
    assert waiting.ahead == 1 and 0.1 < waiting.seconds <= 0.35
    fourth = turns.join()
    assert fourth.status().ahead == 2 and fourth.status().seconds > waiting.seconds + 0.2
    for ticket in (second, third, fourth):
        ticket.release()


def test_an_abandoned_ticket_gives_way_and_a_full_line_times_out():
    turns = Turns(2)
    a, b, c, d = (turns.join() for _ in range(4))
    assert a.wait(0) and b.wait(0)  # two slots: two turns at once
    assert not c.wait(0.05)  # times out, keeps its place
    c.release()  # given up (a closed browser tab)
    a.release()
    assert d.wait(1)
    b.release()
    d.release()
    assert turns.busy() == 0


def test_waiting_message_says_how_many_and_how_long():
    assert "2 questions ahead of yours, about 8 s" in waiting_message(Waiting(2, 7.2))
    assert "1 question ahead of yours" in waiting_message(Waiting(1, None))
    assert "your turn is next" in waiting_message(Waiting(1, 0.4))


# --- the pipeline and the UI while the model is busy --------------------------------------------------------
@pytest.fixture(scope="module")
def services(tmp_path_factory, embedder, settings_at):
    corpus = tmp_path_factory.mktemp("seed")
    shutil.copy(PROJECT_ROOT / "corpus" / SEED_ID, corpus / SEED_ID)
    settings = settings_at(tmp_path_factory.mktemp("data"), corpus_dir=corpus, llm_timeout=30)
    services = open_services(settings, llm=ScriptedLLM(reply=REPLY), embedder=embedder)
    services.ensure_corpus(progress=False)
    return services


def test_a_streamed_answer_reports_its_place_in_line_then_reads_when_its_turn_comes(services):
    pipeline = services.pipeline
    busy = pipeline.reader.turns.join()  # another person's question holds the model
    assert busy.wait(0)
    stream = pipeline.ask_stream(QUESTION, mode="llm")
    assert isinstance(next(stream), Reading)
    waiting = next(stream)
    assert waiting == Waiting(1, waiting.seconds)
    busy.release()
    rest = list(stream)
    assert isinstance(rest[0], Reading)  # back from waiting to reading, once its turn came
    final = rest[-1]
    assert isinstance(final, Answer) and final.mode == "llm" and final.short_answer == "CATL"
    assert final.timings["queue"] > 0 and pipeline.reader.turns.busy() == 0


def test_ask_gives_the_extractive_answer_when_the_model_stays_busy(services):
    pipeline = services.pipeline
    busy = pipeline.reader.turns.join()
    busy.wait(0)
    quick = pipeline.settings.model_copy(update={"llm_timeout": 0.3})
    pipeline.reader.settings, saved = quick, pipeline.reader.settings
    try:
        answer = pipeline.ask(QUESTION, mode="llm")
    finally:
        pipeline.reader.settings = saved
        busy.release()
    assert answer.mode == "extractive" and answer.citations and "51%" in answer.citations[0].quote
    assert any("stayed busy with other questions" in note for note in answer.notes), answer.notes
    assert pipeline.reader.turns.busy() == 0  # the question that gave up left the line


def test_the_chat_shows_the_wait_while_another_question_holds_the_model(services):
    callbacks = AskCallbacks(services)
    busy = services.pipeline.reader.turns.join()
    busy.wait(0)
    shown: list[str] = []
    try:
        for update in callbacks.respond(QUESTION, [], [], [], "llm", 4):
            chat = update[1]
            if isinstance(chat, list) and chat:
                shown.append(chat[-1]["content"])
            if any("Waiting for the reader model" in s for s in shown) and busy is not None:
                busy.release()
                busy = None
    finally:
        if busy is not None:
            busy.release()
    waiting = [s for s in shown if "Waiting for the reader model" in s]
    assert waiting and "1 question ahead of yours" in waiting[0]
    assert "CATL" in shown[-1] and "Waiting" not in shown[-1]


# --- in the browser: a question beyond the UI's concurrency is not left mute ------------------------------------
# Whether the chat shows Gradio's queue indicator: a hidden one is in the page too, at opacity 0.
SHOWS_QUEUED = """() => Array.from(document.querySelectorAll('#chat .progress-text')).some(e =>
    e.textContent.includes('queue:') && e.checkVisibility({opacityProperty: true, visibilityProperty: true}))"""


@pytest.mark.browser
def test_a_question_waiting_for_a_free_slot_shows_its_place_then_its_answer(tmp_path, browser, fake_ollama):  # noqa: F811
    """`python ui.py` answering one question at a time (RAG_UI_CONCURRENCY=1) with a reader that takes seconds:
    while the first page's question is answered, the second page's chat says it is queued, then answers."""
    from tests.conftest import free_port, stop_process
    from tests.llm_servers import SLOW_S
    from tests.ui_helpers import CHROMIUM, MAJORITY, open_page, seed_corpus, start_ui, ui_env

    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (make browser installs it)")
    reader = fake_ollama("slow")
    port = free_port()
    env = ui_env(tmp_path / "data", seed_corpus(tmp_path / "corpus"), port, RAG_LLM="ollama",
                 RAG_OLLAMA_HOST=reader.host, RAG_ANSWER_MODE="llm", RAG_UI_CONCURRENCY="1", RAG_LLM_TIMEOUT="60")
    proc = start_ui(env, tmp_path / "server.log")
    try:
        first, second = (open_page(browser, f"http://127.0.0.1:{port}") for _ in range(2))
        for page in (first, second):
            page.wait_for_selector("#question textarea")
            box = page.locator("#question textarea")
            box.fill(QUESTION)
            box.press("Enter")
            page.wait_for_timeout(300)  # the first one takes the only slot
        second.wait_for_function(SHOWS_QUEUED, timeout=SLOW_S * 1000)
        assert len(reader.requests) == 1  # the first question is still being answered
        for page in (first, second):
            page.locator("#chat .answer", has_text=MAJORITY).wait_for(timeout=4 * SLOW_S * 1000)
        assert not second.evaluate(SHOWS_QUEUED)
    finally:
        stop_process(proc)
