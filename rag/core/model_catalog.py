"""The local GGUF models the product knows, by exact size and SHA-256, and whether one is installed and verified.

Pure data and small file checks, for settings (which validates ``RAG_LLM_MODEL`` and resolves ``RAG_LLM=auto``)
and for the installer (``rag.llm.models``), which writes the files and the stamps read here. An installed model
is ``<models_dir>/<official file name>``; its ``<file>.verified`` stamp records the size, SHA-256 and mtime of
the file when it was last hashed, so checking it costs no re-hashing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


class UnknownModel(ValueError):
    """A model name that is not in the catalog (the message names the known ones)."""


@dataclass(frozen=True)
class ModelSpec:
    """A model file, known by its exact size and SHA-256, and the Hugging Face repository that serves it."""

    name: str
    title: str
    file_name: str
    size: int
    sha256: str
    hf_repo: str


# Sizes and SHA-256 of the official files (the two coder models': from the shared models README).
MODELS: dict[str, ModelSpec] = {m.name: m for m in (
    ModelSpec("qwen2.5-coder-1.5b", "Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Apache-2.0)",
              "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", 1_117_320_768,
              "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
              "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF"),
    ModelSpec("qwen2.5-coder-0.5b", "Qwen2.5-Coder-0.5B-Instruct Q4_K_M (Apache-2.0)",
              "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", 491_400_064,
              "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
              "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF"),
    # The general (not coder-tuned) 1.5B model. No PyPI package is known to hold it and the shared models README
    # does not list it: it installs from a local copy (--from) or from Hugging Face. Size and SHA-256 of the
    # official file as many unrelated public projects pin it. The reader's thresholds were fitted on the coder
    # model: refit them with bench/reader_calibration.py before relying on this one (README, Quality).
    ModelSpec("qwen2.5-1.5b", "Qwen2.5-1.5B-Instruct Q4_K_M (Apache-2.0)",
              "qwen2.5-1.5b-instruct-q4_k_m.gguf", 1_117_320_736,
              "6a1a2eb6d15622bf3c96857206351ba97e1af16c30d7a74ee38970e434e9407e",
              "Qwen/Qwen2.5-1.5B-Instruct-GGUF"),
)}


def get_model(name: str) -> ModelSpec:
    """The catalog entry called ``name``; UnknownModel naming the known models otherwise."""
    if name not in MODELS:
        raise UnknownModel(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]


def model_file(spec: ModelSpec, folder: Path) -> Path:
    """Where ``spec`` is installed in ``folder`` (whether or not it is there)."""
    return Path(folder) / spec.file_name


def stamp_path(path: Path) -> Path:
    """The ``.verified`` stamp next to the model file ``path``."""
    return path.with_name(path.name + ".verified")


def stamp_data(spec: ModelSpec, path: Path) -> dict:
    """What the stamp of a verified ``path`` holds: the expected size and hash, and the file's mtime."""
    return {"size": spec.size, "sha256": spec.sha256, "mtime_ns": path.stat().st_mtime_ns}


def is_verified(spec: ModelSpec, folder: Path) -> bool:
    """True when the installed file has the expected size and a stamp recording its verified hash."""
    path = model_file(spec, folder)
    try:
        st, stamp = path.stat(), json.loads(stamp_path(path).read_text())
    except (OSError, ValueError):
        return False
    return st.st_size == spec.size and stamp == stamp_data(spec, path)
