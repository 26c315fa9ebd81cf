"""The plain HTTP JSON API beside the web UI: ``POST /api/ask``, served by the same server as the page.

A request body is a JSON object ``{"question": ..., "mode"?, "top_k"?, "history"?, "as_of"?, "since"?, "until"?,
"sources"?}`` (the arguments of the Gradio ``/ask`` API, as JSON values: ``history`` a list of [question, answer]
pairs, ``sources`` a list of outlets or comma-separated text); the reply is the Answer as JSON
(:meth:`rag.core.types.Answer.to_json`). Errors are ``{"error": message}``: 400 for a bad request (an empty
question, a bad date, a bad history, an unknown field, a question, history or top_k over its limit), 401 without
the login when the app has one (HTTP Basic, the UI's username and password), 429 after too many failed logins
(:mod:`rag.web.throttle`), 413 for a body over :data:`MAX_BODY_BYTES` (refused unread by :mod:`rag.web.body_limit`,
which :func:`rag.web.serve.launch` puts in front of the whole app), 503 when ``queue_size`` requests already wait
("busy, try again") and for the app's own errors (:class:`rag.core.errors.RagError`: the LLM or the index failing),
500 (and the traceback in the server log only) for anything else.

It answers through the same ``pipeline.ask``, :func:`rag.web.turns.ask_options` and
:func:`rag.web.turns.check_request` as the UI, at most ``ui_concurrency`` questions at once (the UI's own limit);
up to ``queue_size`` more wait without holding a thread. :func:`rag.web.serve.launch` adds :func:`routes` to
Gradio's FastAPI app. Starlette only, no Gradio.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
from typing import Optional

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rag.core.errors import InvalidQuestion, RagError
from rag.core.settings import MAX_TOP_K
from rag.web.turns import ask_options, check_request

log = logging.getLogger(__name__)

ASK_PATH = "/api/ask"
FIELDS = ("question", "mode", "top_k", "history", "as_of", "since", "until", "sources")
MAX_BODY_BYTES = 1_000_000  # any request body, Gradio's too (rag.web.body_limit); bounds the history
CHALLENGE = {"WWW-Authenticate": 'Basic realm="News Q&A", charset="UTF-8"'}


class BadRequest(ValueError):
    """A request body the API cannot use; the message says what is wrong (HTTP 400)."""


def error(status: int, message: str, headers: Optional[dict] = None) -> JSONResponse:
    """The JSON error reply: ``{"error": message}``."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _text(body: dict, key: str) -> str:
    """An optional text field ("" when absent or null)."""
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be text")
    return value


def parse_body(raw: bytes, settings) -> tuple[str, dict, list[tuple[str, str]]]:
    """The question, the keywords of ``ask`` and the history of a request body; BadRequest when it is unusable or
    asks for more than ``settings`` allow (:func:`rag.web.turns.check_request`).

    The question's content, the mode's name and the dates are checked by the pipeline (InvalidQuestion).
    """
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested thousands deep
        raise BadRequest(f"the body is not JSON ({str(exc)[:200] or type(exc).__name__})") from None
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object, e.g. {"question": "Who holds the majority stake?"}')
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}; accepted: {', '.join(FIELDS)}")
    if not isinstance(body.get("question"), str):
        raise BadRequest("question is required and must be text")
    top_k = body.get("top_k")
    if isinstance(top_k, float) and top_k.is_integer():
        top_k = int(top_k)
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise BadRequest(f"top_k must be a whole number from 1 to {MAX_TOP_K} (or null: the configured one)")
    sources = body.get("sources")
    if sources is not None and not isinstance(sources, str) and not (
            isinstance(sources, list) and all(isinstance(s, str) for s in sources)):
        raise BadRequest("sources must be a list of outlet names (or comma-separated text)")
    history = body.get("history")
    if history is None:
        history = []
    if not isinstance(history, list) or not all(
            isinstance(turn, list) and len(turn) == 2 and all(isinstance(x, str) for x in turn) for turn in history):
        raise BadRequest("history must be a list of [question, answer] pairs of text")
    turns = [(q, a) for q, a in history]
    try:
        options = ask_options(_text(body, "mode"), top_k or 0, _text(body, "as_of"), _text(body, "since"),
                              _text(body, "until"), sources)
        check_request(body["question"], turns, settings)
    except InvalidQuestion as exc:
        raise BadRequest(str(exc)) from None
    return body["question"], options, turns


def credentials_match(header: Optional[str], login: tuple[str, str]) -> bool:
    """Whether an ``Authorization`` header carries HTTP Basic credentials equal to ``login`` (compared in
    constant time, like Gradio's own login)."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    same_user = hmac.compare_digest(user.strip().encode(), login[0].encode())
    same_password = hmac.compare_digest(password.encode(), login[1].encode())
    return bool(sep) and same_user and same_password


class AskAPI:
    """``POST /api/ask`` for one pipeline; ``login``: the (username, password) the UI asks for, or None (open,
    as the UI then is); ``settings``: the limits (``ui_concurrency``, ``queue_size`` and those of a request)."""

    def __init__(self, pipeline, login: Optional[tuple[str, str]], settings):
        self.pipeline = pipeline
        self.login = login
        self.settings = settings
        self.slots = asyncio.Semaphore(max(1, settings.ui_concurrency))  # binds to the server's loop when waited on
        self.admitted = 0  # requests answering or waiting for a slot (only the event loop's thread changes it)

    async def ask(self, request: Request) -> Response:
        if self.login is not None and not credentials_match(request.headers.get("authorization"), self.login):
            return error(401, "login required: send the app's username and password (HTTP Basic auth)", CHALLENGE)
        try:
            question, options, history = parse_body(await request.body(), self.settings)
        except BadRequest as exc:
            return error(400, str(exc))
        if self.admitted >= self.settings.ui_concurrency + self.settings.queue_size:
            return error(503, "busy: too many questions are waiting; try again in a moment", {"Retry-After": "5"})
        self.admitted += 1
        try:
            async with self.slots:
                return await self._answer(question, options, history)
        finally:
            self.admitted -= 1

    async def _answer(self, question: str, options: dict, history: list[tuple[str, str]]) -> Response:
        try:
            answer = await run_in_threadpool(self.pipeline.ask, question, history=history or None, **options)
        except InvalidQuestion as exc:  # an empty question, a bad date or mode: the request's fault
            return error(400, str(exc))
        except RagError as exc:  # the LLM or the index failing: messages meant for people, as they are
            return error(503, str(exc))
        except Exception as exc:  # never a traceback in the reply; it goes to the log
            log.exception("answering over the HTTP API failed")
            return error(500, f"Something went wrong ({type(exc).__name__}); the error is in the server log.")
        return Response(answer.to_json(), media_type="application/json")


def routes(pipeline, login: Optional[tuple[str, str]], settings) -> list[Route]:
    """The API's routes, for the FastAPI app Gradio serves (``demo.launch(app_kwargs={"routes": ...})``)."""
    return [Route(ASK_PATH, AskAPI(pipeline, login, settings).ask, methods=["POST"], name="api_ask")]
