"""Comparing models on the same items: the difference and its paired bootstrap 95% CI.

Both models answer the same items, so the items are resampled together and the difference is
recomputed on each resample (the paired bootstrap of Koehn 2004, "Statistical significance tests
for machine translation evaluation"; Efron & Tibshirani 1993). A CI that excludes zero is what
makes "the adapted model beats the base" a measured claim rather than noise on 200 questions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Diff:
    value: float  # statistic(B) - statistic(A) on all items
    lo: float  # 2.5th percentile over resamples
    hi: float  # 97.5th percentile

    @property
    def significant(self) -> bool:
        return self.lo > 0 or self.hi < 0


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, n: int = 1000, seed: int = 1234,
                     weights: np.ndarray | None = None, chunk: int = 200) -> Diff:
    """Difference of means of per-item scores `b - a`, with a 95% percentile CI.

    With `weights`, each mean is a weighted one (sum(w·x) / sum(w)): bits per byte pools
    documents by their bytes, so `a` and `b` are then per-document bits/byte and `weights` bytes.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError("paired bootstrap needs two equal-length, non-empty score vectors")
    w = np.ones_like(a) if weights is None else np.asarray(weights, dtype=np.float64)
    value = float(np.sum(w * b) / np.sum(w) - np.sum(w * a) / np.sum(w))
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, n, chunk):  # chunks keep memory at chunk × items, whatever the set size
        idx = rng.integers(0, len(a), size=(min(chunk, n - start), len(a)))
        ws = w[idx].sum(axis=1)
        diffs.append(((w[idx] * b[idx]).sum(axis=1) - (w[idx] * a[idx]).sum(axis=1)) / ws)
    d = np.concatenate(diffs)
    lo, hi = np.percentile(d, [2.5, 97.5])
    return Diff(value, float(lo), float(hi))


def bootstrap_ci(x: np.ndarray, *, weights: np.ndarray | None = None, n: int = 1000, seed: int = 1234,
                 chunk: int = 200) -> tuple[float, float]:
    """95% percentile CI of the (weighted) mean of per-unit values `x`, the units resampled with
    replacement. With `weights` (bytes), per-unit bits per byte pool into the corpus's bits per
    byte, so the CI is that of the number reported, over the units the split holds out."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError("bootstrap needs a non-empty score vector")
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, n, chunk):
        idx = rng.integers(0, len(x), size=(min(chunk, n - start), len(x)))
        means.append((w[idx] * x[idx]).sum(axis=1) / w[idx].sum(axis=1))
    lo, hi = np.percentile(np.concatenate(means), [2.5, 97.5])
    return float(lo), float(hi)


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion k/n (Wilson 1927; Brown, Cai & DasGupta 2001
    recommend it over the normal interval, which collapses to a point at 0 or 1 correct)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def position_name(i: int, labels: list[str] | None = None) -> str:
    """How an answer position is shown: the set's label (`긍정`), else its letter (A, B, ...)."""
    if labels and i < len(labels):
        return labels[i]
    return chr(ord("A") + i) if i < 26 else str(i)


@dataclass(frozen=True)
class Levels:
    """What a multiple-choice accuracy means next to: guessing and always answering the commonest
    gold position."""
    chance: float  # mean over items of 1 / number of choices
    majority: float  # share of the most common gold position
    majority_answer: str


def levels(gold: np.ndarray, n_choices: np.ndarray, labels: list[str] | None = None) -> Levels:
    gold = np.asarray(gold, dtype=np.int64)
    counts = np.bincount(gold, minlength=1)
    top = int(np.argmax(counts))
    return Levels(float(np.mean(1.0 / np.asarray(n_choices, dtype=np.float64))),
                  float(counts[top] / len(gold)), position_name(top, labels))


def degenerate(pred: np.ndarray, n_choices: np.ndarray, labels: list[str] | None = None, *,
               share: float = 0.5) -> str | None:
    """"degenerate: answers X on N%" when one answer position takes more than `share` of the
    items, else None. A model that answers one letter whatever the question scores the share of
    that letter among the gold answers, so its accuracy says nothing about the language.

    Where every item has two choices one position always holds at least half, so the bar there is
    halfway from `share` to 1 (75% by default): a model that answers 'yes' on 80% of a balanced
    yes/no set is flagged, one at 55% is not."""
    pred = np.asarray(pred, dtype=np.int64)
    if len(pred) == 0:
        return None
    counts = np.bincount(pred)
    top = int(np.argmax(counts))
    top_share = counts[top] / len(pred)
    bar = share if np.max(n_choices) > 2 else (share + 1) / 2
    if top_share > bar:
        return f"degenerate: answers {position_name(top, labels)} on {top_share:.0%}"
    return None
