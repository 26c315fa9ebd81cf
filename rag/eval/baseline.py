"""The baseline every evaluation can be compared with: a plain LlamaIndex vector retriever over the same index.

Its answer is the top retrieved chunk's text; its citations are the retrieved chunks; it never abstains.
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

from rag.core.types import Answer, Citation, Passage
from rag.eval.runner import run_questions

BASELINE_DESCRIPTION = ("VectorStoreIndex.from_vector_store(...).as_retriever(similarity_top_k=top_k); "
                        "answer = top chunk text, citations = retrieved chunks, never abstains")


def baseline_retriever(pipeline, top_k: int):
    """A plain LlamaIndex vector retriever over the pipeline's own chunks collection."""
    from llama_index.core import VectorStoreIndex

    index = VectorStoreIndex.from_vector_store(pipeline.store.vector_store, embed_model=pipeline.embedder.llama)
    return index.as_retriever(similarity_top_k=top_k)


def baseline_answer(retriever, question: str, chunks: Optional[dict] = None) -> Answer:
    """The baseline's answer: the top retrieved chunk's text (never abstains); citations = the retrieved nodes.

    Spans and article ids are the LlamaIndex nodes' own; ``chunks`` (chunk id -> the index's ChunkRecord)
    gives each passage the title and source it was stored with.
    """
    t0 = time.perf_counter()
    nodes = retriever.retrieve(question)
    elapsed = time.perf_counter() - t0
    chunks = chunks or {}
    passages, citations = [], []
    for i, hit in enumerate(nodes):
        node = hit.node
        chunk = chunks.get(node.node_id)
        title, source = (chunk.title, chunk.source) if chunk else ("", "")
        start, end = int(node.start_char_idx or 0), int(node.end_char_idx or 0)
        article_id = str(node.ref_doc_id or "")
        score = round(float(hit.score or 0.0), 6)
        text = node.get_content()
        passages.append(Passage(
            chunk_id=node.node_id, article_id=article_id, title=title, source=source, text=text,
            start_char_idx=start, end_char_idx=end, score=score, dense_score=score,
        ))
        citations.append(Citation(
            n=i + 1, article_id=article_id, title=title, source=source, quote=text, start_char_idx=start,
            end_char_idx=end, score=score, passage_index=i,
        ))
    return Answer(
        question=question, text=passages[0].text if passages else "", citations=citations, passages=passages,
        abstained=False, mode="baseline", timings={"retrieve": elapsed, "total": elapsed}, retrieval_query=question,
    )


def evaluate_baseline(pipeline, questions: Sequence, top_k: Optional[int] = None, *, progress: bool = True) -> dict:
    """Score a plain LlamaIndex vector retriever over the same index (answer = top chunk, no abstention)."""
    top_k = top_k or pipeline.settings.top_k
    retriever = baseline_retriever(pipeline, top_k)
    chunks = {c.chunk_id: c for c in pipeline.store.committed_chunks()}
    meta = {
        "system": "baseline", "mode": "top chunk", "top_k": top_k, "index": pipeline.settings.index_location,
        "embed_model": pipeline.settings.embed_model, "description": BASELINE_DESCRIPTION,
    }
    return run_questions("baseline (vector)", questions, lambda q: baseline_answer(retriever, q.question, chunks),
                         pipeline.store, meta=meta, progress=progress)
