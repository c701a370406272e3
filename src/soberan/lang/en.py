"""English. Words are a Unicode-aware regex split. Thresholds are the Gopher and FineWeb values
as published (FineWeb2 has no English config: English is FineWeb itself)."""

from __future__ import annotations

from soberan.lang import BASE_THRESHOLDS, LangPack, space_words, thresholds

PACK = LangPack(
    code="en", name="English", words=space_words,
    answer_cue="Answer:",
    # Gopher's stop-word rule (Rae et al. 2021, A.1.1): a document must hold at least two of these.
    stop_words=frozenset(["the", "be", "to", "of", "and", "that", "have", "with"]),
    thresholds=thresholds(char_duplicates_ratio=0.01, language_score=BASE_THRESHOLDS["language_score"]),
    sources="stop words and thresholds: Gopher (Rae et al. 2021) and FineWeb (Penedo et al. 2024)",
)
