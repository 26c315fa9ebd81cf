"""The query side: question -> retrieval -> reranking -> answer (extractive or LLM reader) -> checked citations."""
