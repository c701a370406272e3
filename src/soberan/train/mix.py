"""The declared data mix, drawn from the packed stream one training window at a time.

Documents fall into groups of equal provenance (source, language, license, jurisdiction, replay
or not). Each training sequence is `seq_len` tokens read contiguously from one group, whose
documents are walked in an order shuffled anew each epoch; a group is chosen with probability

    p(g) ∝ tokens(g) × source_weight × lang_weight

normalized so that replay groups together get `replay_share` and the others the rest. A source
whose tokens were drawn `max_epochs` times over is left out from then on (the repetition cap wins
over the weights); when every source is spent, the data is exhausted.

All of it is a pure function of the seed and the counts drawn so far, so every process of a
distributed run draws the same global batch, and a checkpoint's `state_dict()` resumes the draw
exactly where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from soberan.train.data import Packed

GROUP_KEYS = ("source", "lang", "license", "jurisdiction", "replay")


class DataExhausted(Exception):
    """Every source reached its repetition cap."""


@dataclass
class Group:
    source: str
    lang: str
    license: str
    jurisdiction: str
    replay: bool
    starts: np.ndarray
    lens: np.ndarray

    @property
    def size(self) -> int:
        return int(self.lens.sum())


def groups_of(docs: pa.Table) -> list[Group]:
    out = []
    keys = docs.select(list(GROUP_KEYS)).group_by(list(GROUP_KEYS)).aggregate([]).to_pylist()
    for k in sorted(keys, key=lambda k: tuple(str(k[c]) for c in GROUP_KEYS)):
        mask = None
        for c in GROUP_KEYS:
            m = pc.equal(docs.column(c), pa.scalar(k[c], docs.schema.field(c).type))
            mask = m if mask is None else pc.and_(mask, m)
        sub = docs.filter(mask)
        out.append(Group(k["source"], k["lang"], k["license"], k["jurisdiction"], bool(k["replay"]),
                         sub.column("start").to_numpy().astype(np.int64),
                         sub.column("n_tokens").to_numpy().astype(np.int64)))
    return [g for g in out if g.size > 0]


class MixSampler:
    """Draws global batches of `batch` windows of `seq_len` tokens. Consecutive windows of a group
    overlap by one token, so every token of the stream is a prediction target exactly once."""

    def __init__(self, packed: Packed, *, seq_len: int, batch: int, seed: int,
                 source_weights: dict[str, float] | None = None,
                 lang_weights: dict[str, float] | None = None, replay_share: float = 0.0,
                 max_epochs: float = 4.0, max_epochs_per_source: dict[str, float] | None = None):
        if seq_len < 2:
            raise ValueError("seq_len must be at least 2")
        self.tokens = packed.tokens
        self.groups = groups_of(packed.docs)
        if not self.groups:
            raise ValueError("no training tokens: every document was held out, empty or excluded")
        self.seq_len, self.batch, self.seed = seq_len, batch, seed
        self.stride = seq_len - 1
        sw, lw = source_weights or {}, lang_weights or {}
        self.weights = np.array([g.size * sw.get(g.source, 1.0) * lw.get(g.lang, 1.0)
                                 for g in self.groups], dtype=np.float64)
        self.replay = np.array([g.replay for g in self.groups])
        self.replay_share = replay_share if self.replay.any() else 0.0
        sizes: dict[str, int] = {}
        for g in self.groups:
            sizes[g.source] = sizes.get(g.source, 0) + g.size
        caps = max_epochs_per_source or {}
        self.cap = {s: caps.get(s, max_epochs) * n for s, n in sizes.items()}
        self.pos = np.zeros(len(self.groups), dtype=np.int64)  # tokens drawn from each group
        self.rng = np.random.default_rng(seed)
        self.samples = 0
        self._epoch_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        if self.weights.sum() <= 0:
            raise ValueError("the mix gives every source and language a weight of 0")

    # --- the mix -------------------------------------------------------------------------

    def _active(self) -> np.ndarray:
        used: dict[str, int] = {}
        for g, p in zip(self.groups, self.pos):
            used[g.source] = used.get(g.source, 0) + int(p)
        return np.array([used[g.source] < self.cap[g.source] for g in self.groups]) & (self.weights > 0)

    def probabilities(self) -> np.ndarray:
        w = np.where(self._active(), self.weights, 0.0)
        rep, main = w * self.replay, w * ~self.replay
        if rep.sum() > 0 and main.sum() > 0 and self.replay_share > 0:
            p = self.replay_share * rep / rep.sum() + (1 - self.replay_share) * main / main.sum()
        elif w.sum() > 0:
            p = w / w.sum()
        else:
            raise DataExhausted(f"every source reached its repetition cap after {self.samples} sequences")
        return p

    def planned_shares(self) -> dict[str, float]:
        """The share of tokens each source gets under the declared mix, before any cap bites."""
        p = self.probabilities()
        out: dict[str, float] = {}
        for g, x in zip(self.groups, p):
            out[g.source] = out.get(g.source, 0.0) + float(x)
        return out

    # --- drawing -------------------------------------------------------------------------

    def _epoch(self, gi: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        key = (gi, epoch)
        if key not in self._epoch_cache:
            if len(self._epoch_cache) > 4 * len(self.groups):
                self._epoch_cache.clear()
            g = self.groups[gi]
            order = np.random.default_rng([self.seed, gi, epoch]).permutation(len(g.lens))
            self._epoch_cache[key] = (order, np.cumsum(g.lens[order]))
        return self._epoch_cache[key]

    def _take(self, gi: int, pos: int, n: int) -> np.ndarray:
        g, size = self.groups[gi], self.groups[gi].size
        pieces = []
        while n > 0:
            epoch, off = divmod(pos, size)
            order, cum = self._epoch(gi, epoch)
            k = int(np.searchsorted(cum, off, side="right"))
            doc = order[k]
            in_doc = off - (int(cum[k - 1]) if k else 0)
            m = min(int(g.lens[doc]) - in_doc, n)
            start = int(g.starts[doc]) + in_doc
            pieces.append(self.tokens[start:start + m])
            pos, n = pos + m, n - m
        return np.concatenate(pieces).astype(np.int64)

    def next_batch(self) -> np.ndarray:
        """The next global batch, shape (batch, seq_len). Raises DataExhausted when spent."""
        rows, before = [], self.state_dict()
        try:
            return self._draw(rows)
        except DataExhausted:
            self.load_state_dict(before)  # a batch is drawn whole or not at all: no token miscounted
            raise

    def _draw(self, rows: list) -> np.ndarray:
        cum = np.cumsum(self.probabilities())
        used: dict[str, int] = {}
        for g, n in zip(self.groups, self.pos):
            used[g.source] = used.get(g.source, 0) + int(n)
        for _ in range(self.batch):
            gi = min(int(np.searchsorted(cum, self.rng.random() * cum[-1], side="right")), len(cum) - 1)
            rows.append(self._take(gi, int(self.pos[gi]), self.seq_len))
            self.pos[gi] += self.stride
            self.samples += 1
            src = self.groups[gi].source
            used[src] += self.stride
            if used[src] >= self.cap[src]:  # the source just reached its cap: draw without it
                cum = np.cumsum(self.probabilities())
        return np.stack(rows)

    # --- accounting and resume -----------------------------------------------------------

    def token_shares(self) -> dict[str, dict[str, dict[str, float]]]:
        """Tokens drawn so far by source, license, jurisdiction and language, with shares."""
        total = int(self.pos.sum())
        out: dict[str, dict[str, dict[str, float]]] = {}
        for field in ("source", "license", "jurisdiction", "lang"):
            agg: dict[str, int] = {}
            for g, n in zip(self.groups, self.pos):
                agg[getattr(g, field)] = agg.get(getattr(g, field), 0) + int(n)
            out[field] = {k: {"tokens": v, "share": round(v / total, 6) if total else 0.0}
                          for k, v in sorted(agg.items())}
        replay = int(self.pos[self.replay].sum())
        out["replay"] = {"tokens": replay, "share": round(replay / total, 6) if total else 0.0}
        return out

    @property
    def tokens_drawn(self) -> int:
        return int(self.pos.sum())

    def state_dict(self) -> dict:
        return {"pos": self.pos.tolist(), "rng": self.rng.bit_generator.state, "samples": self.samples,
                "groups": [(g.source, g.lang, g.license, g.jurisdiction, g.replay) for g in self.groups]}

    def load_state_dict(self, state: dict) -> None:
        mine = [(g.source, g.lang, g.license, g.jurisdiction, g.replay) for g in self.groups]
        if [tuple(x) for x in state["groups"]] != mine:
            raise ValueError("the checkpoint was drawn from different data (groups differ)")
        self.pos = np.array(state["pos"], dtype=np.int64)
        self.rng.bit_generator.state = state["rng"]
        self.samples = state["samples"]
