"""soberan evaluate: the nation's benchmarks, offline; models side by side with confidence intervals.

    eval/results.json                     the results (ledger artifact evaluate/results), merged
                                          with the earlier ones: sets a run does not score stay
    eval/items/<model sha>/<set>.parquet  one row per item: prediction, log-likelihoods, contamination
    eval/items/<model sha>/heldout_<lang>.parquet   one row per held-out unit: NLL and bytes
    eval/items/<model sha>/prompts.parquet          greedy answers to the fixed national prompts
    eval/items/<model sha>/<name>.json    its metrics and fingerprint; a rerun with the same
                                          fingerprint reuses it, so a killed run resumes

Order of work: resolve models (by ledger role: base, adapted) and sets, read every set (rows that
do not fit their spec are reported with the reason, never dropped silently), check the sets
against the models' training corpora, score each model on each set, on the held-out units of
every language (bits per byte with a bootstrap CI over units, fertility) and on the fixed
prompts, compare (paired CIs; no claim with too few units or a degenerate model), merge, write,
record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from soberan import stages

# The config sections this stage reads (the stage registry keeps them): hashed into each artifact
# it records, and what `soberan build` compares to decide whether the stage must run again.
CONFIG_SECTIONS = stages.get("evaluate").config_sections


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
