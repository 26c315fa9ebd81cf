"""Local and remote LLMs: installing verified model files and building LlamaIndex LLMs from settings."""
