"""soberan evaluate: the nation's benchmarks, offline; models side by side with confidence intervals.

    eval/results.json                     the results (ledger artifact evaluate/results)
    eval/items/<model sha>/<set>.parquet  one row per item: prediction, log-likelihoods, contamination
    eval/items/<model sha>/<set>.json     its metrics and fingerprint; a rerun with the same
                                          fingerprint reuses it, so a killed run resumes

Order of work: resolve models and sets, read every set (rows that do not fit their spec are
reported with the reason, never dropped silently), check the sets against the models' training
corpora, score each model on each set and on held-out text, compare, write, record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The config sections this stage reads: hashed into each artifact it records, and what
# `soberan build` compares to decide whether the stage must run again.
CONFIG_SECTIONS = ("evaluate",)


@dataclass
class EvalSummary:
    results_path: Path
    models: list[str]
    sets: list[str]
    scores: dict[str, dict[str, dict]]  # model label -> set -> metrics
    bpb: dict[str, dict[str, float]]  # model label -> lang -> bits per byte
    comparisons: list[dict]
    contaminated: dict[str, int]  # set -> flagged items
    record_hash: str | None = None
    reused: int = 0  # (model, set) results taken from an earlier, identical run


def run(ws, *, models: list[str | Path] | None = None, sets: list[str] | None = None,
        limit: int | None = None, show: bool = True) -> EvalSummary:
    """Score the models (default: `[evaluate] compare`, else the latest trained model) on the sets
    (default: `[evaluate] sets`) and on held-out text; write eval/results.json and record it in
    the ledger as evaluate/results. Print one table per set and language when `show`."""
    from soberan.evaluate.stage import evaluate

    return evaluate(ws, models=models, sets=sets, limit=limit, show=show)
