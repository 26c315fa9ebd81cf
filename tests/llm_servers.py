"""Servers the LLM backend tests talk to: the real ``llama_cpp.server`` (OpenAI API) serving the bundled GGUF,
and, for Ollama (which cannot run here), a small HTTP server speaking the part of Ollama's ``/api/chat``
protocol the LlamaIndex integration uses, with scripted replies.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rag.core.settings import PROJECT_ROOT
from rag.query.pipeline import Pipeline
from tests.conftest import free_port
from tests.llm_helpers import GGUF, SECRET


class LlamaServer:
    """``python -m llama_cpp.server`` serving the bundled GGUF on a free loopback port.

    It runs as ``runpy.run_module("llama_cpp.server")`` in a process of its own whose ``llama_cpp.Llama`` is
    ``rag.llm.llamacpp.PlainBuffersLlama``: the server has no option for llama.cpp's extra (AMX) buffers, which
    crash natively-built llama.cpp with SIGILL in VMs that advertise AMX without supporting it.
    """

    def __init__(self, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        code = (
            "import runpy\nimport llama_cpp\nfrom rag.llm.llamacpp import PlainBuffersLlama\n"
            "llama_cpp.Llama = PlainBuffersLlama  # the server builds llama_cpp.Llama; this process is the server's\n"
            "runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)\n"
        )
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, "--model", str(GGUF), "--host", "127.0.0.1", "--port", str(self.port),
             "--n_ctx", "4096", "--n_threads", "1", "--n_threads_batch", "1", "--api_key", SECRET],
            cwd=PROJECT_ROOT, stdout=self.log, stderr=subprocess.STDOUT,
        )
        self._wait_ready(timeout=90)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        request = urllib.request.Request(f"{self.url}/models", headers={"Authorization": f"Bearer {SECRET}"})
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.25)
        self.stop()
        pytest.fail(f"llama_cpp.server did not answer /v1/models within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """One llama_cpp.server for the test module, stopped after its last test."""
    server = LlamaServer(tmp_path_factory.mktemp("server") / "server.log")
    yield server
    server.stop()


@pytest.fixture
def fresh_server(tmp_path):
    """``fresh_server()``: a llama_cpp.server of the test's own (one it may kill), stopped after the test."""
    servers = []

    def start() -> LlamaServer:
        servers.append(LlamaServer(tmp_path / f"server-{len(servers)}.log"))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def eos_bias(pipeline: Pipeline) -> None:
    """Make the server's model run to ``max_tokens`` (no end-of-turn token), so a stream lasts long enough."""
    from llama_cpp import Llama

    vocab = Llama(model_path=str(GGUF), vocab_only=True, verbose=False)
    banned = {vocab.token_eos(), vocab.tokenize(b"<|endoftext|>", add_bos=False, special=True)[0]}
    pipeline.llm.additional_kwargs = {"logit_bias": {str(t): -100 for t in banned}}


SLOW_S = 4.0  # how long a ``slow`` FakeOllama takes to answer


class FakeOllama:
    """A loopback HTTP server speaking Ollama's ``/api/chat`` (JSON, or NDJSON when streaming).

    ``mode``: ``answer`` (the reader's reply naming the passage that mentions the majority stake), ``missing``
    (404 ``model not found``, as Ollama answers for a model that was never pulled), ``hang`` (accept and
    never answer) or ``slow`` (answer after :data:`SLOW_S` seconds). Requests are recorded in ``requests``.
    """

    def __init__(self, mode: str = "answer"):
        self.mode = mode
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                fake.requests.append({"path": self.path, "body": body})
                if self.path != "/api/chat":
                    return self._json(404, {"error": "404 page not found"})
                if fake.mode == "missing":
                    return self._json(404, {"error": f"model \"{body.get('model')}\" not found, try pulling it first"})
                if fake.mode == "hang":
                    time.sleep(30)
                    return
                if fake.mode == "slow":
                    time.sleep(SLOW_S)
                reply = fake.reply(body["messages"])
                if not body.get("stream", True):
                    return self._json(200, {**fake.head(body), "message": {"role": "assistant", "content": reply},
                                            **fake.tail()})
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                pieces = re.findall(r"\S+\s*", reply)
                for piece in pieces:
                    self._chunk({**fake.head(body), "message": {"role": "assistant", "content": piece}, "done": False})
                self._chunk({**fake.head(body), "message": {"role": "assistant", "content": ""}, **fake.tail()})
                self.wfile.write(b"0\r\n\r\n")

            def _chunk(self, obj):
                data = json.dumps(obj).encode() + b"\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _json(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def head(body):
        return {"model": body.get("model"), "created_at": "2024-03-11T00:00:00Z"}

    @staticmethod
    def tail():
        return {"done": True, "done_reason": "stop", "total_duration": 1000, "prompt_eval_count": 10, "eval_count": 5}

    @staticmethod
    def reply(messages: list[dict]) -> str:
        last = messages[-1]["content"]
        if last.startswith("Rewrite the last question"):
            return "How much of the Beijing battery joint venture does BAIC hold?"
        passages = dict(re.findall(r"<<<PASSAGE (\d+)>>>\n(.*?)\n<<<END \1>>>", last, re.S))
        n = next((k for k, text in passages.items() if "majority stake" in text), None)
        if n is None:
            return "NOT FOUND"
        return f"ANSWER: a majority stake of 51%\nPASSAGE: {n}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_ollama():
    """``fake_ollama(mode="answer")``: a :class:`FakeOllama` of the test's own, closed after the test."""
    servers = []

    def start(mode="answer") -> FakeOllama:
        servers.append(FakeOllama(mode))
        return servers[-1]

    yield start
    for server in servers:
        server.close()
