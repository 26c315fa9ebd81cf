"""A tiny dated index for the faces' tests: the same question answered by two outlets on two dates.

The publish dates and outlets are set on the stored records directly (the store's own metadata update), so
the tests depend on nothing but the index.
"""

from __future__ import annotations

from pathlib import Path

QUESTION = "How many passengers did the Larkspur ferry service carry?"
UNDATED_TITLE = "Tollan library extends its opening hours"
# article id -> (title, body, site, published); the bodies answer QUESTION differently.
ARTICLES = {
    "larkspur-may.txt": (
        "Larkspur ferry carried 12,400 passengers in May",
        "The Larkspur ferry service carried 12,400 passengers in May, the Tollan harbour board said on Tuesday. "
        "The board expects even more travellers during the summer months.",
        "Coastal Times", "2022-06-14",
    ),
    "larkspur-april.txt": (
        "Larkspur ferry carried 9,800 passengers in April",
        "The Larkspur ferry service carried 9,800 passengers in April, the Tollan harbour board said on Monday. "
        "Repairs to the northern pier kept one of the two boats in port for a week.",
        "Harbour Herald", "2022-05-10",
    ),
    "tollan-library.txt": (
        UNDATED_TITLE,
        "The Tollan public library will open until nine in the evening from next month, its director said. "
        "The reading room gains forty new seats.",
        "", "",
    ),
}
NEWER, OLDER = "larkspur-may.txt", "larkspur-april.txt"


def title_of(article_id: str) -> str:
    """The title of one of :data:`ARTICLES`."""
    return ARTICLES[article_id][0]


def build_dated_index(services, corpus: Path) -> None:
    """Write :data:`ARTICLES` into ``corpus``, ingest them with ``services`` and set their dates and outlets."""
    corpus.mkdir(parents=True, exist_ok=True)
    for article_id, (title, body, _, _) in ARTICLES.items():
        (corpus / article_id).write_text(f"{title}\n\n{body}\n", encoding="utf-8")
    report = services.ingestor.ingest([corpus], progress=False)
    assert sorted(report.added) == sorted(ARTICLES), report.skipped
    records = services.store.get_articles(ARTICLES)
    for article_id, record in records.items():
        record.site, record.published = ARTICLES[article_id][2], ARTICLES[article_id][3]
    services.store.update_article_metadata(list(records.values()))
    services.store.bump_version()  # the retriever reloads the dates and outlets on its next question
