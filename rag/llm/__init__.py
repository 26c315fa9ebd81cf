"""Local and remote LLMs: building a LlamaIndex LLM from settings (``factory``), turning backend failures into
the API's errors (``errors``), and installing verified local model files (``models``).

Importing this package is cheap: a backend's library (llama-cpp-python, openai, ollama) is imported only when
that backend is built.
"""

from rag.llm.errors import as_llm_error
from rag.llm.factory import build_llm
from rag.llm.models import bundled_model_path, resolve_gguf

__all__ = ["as_llm_error", "build_llm", "bundled_model_path", "resolve_gguf"]
