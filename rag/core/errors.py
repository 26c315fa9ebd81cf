"""Exception types of the public API. Every message is meant to be shown to a person as it is."""


class RagError(Exception):
    """Base class of the product's errors."""


class InvalidQuestion(RagError, ValueError):
    """The question is empty or unusable."""


class LLMError(RagError):
    """An LLM backend failed; the message says why and what to do."""


class LLMConfigError(LLMError):
    """The configured backend cannot be built (missing extra, missing model file, bad setting)."""


class LLMTimeout(LLMError):
    """The LLM did not answer within ``llm_timeout`` seconds."""


class LLMConnectionError(LLMError):
    """The LLM server could not be reached, or the connection broke mid-answer."""


class LLMModelNotFound(LLMError):
    """The server does not know the configured model."""


class LLMAuthError(LLMError):
    """The server rejected the API key."""


class LLMContextOverflow(LLMError):
    """The prompt does not fit the LLM's context window."""


class IndexProblem(RagError):
    """The index cannot be used as it is; the message says how to rebuild or which setting to change."""


class IndexMismatch(IndexProblem):
    """The index was built with another embedding model than the one configured."""


class IndexUnavailable(IndexProblem):
    """The Chroma server cannot be reached (after retries); it names the server. Nothing stored is lost."""
