"""MinHash signatures and LSH band keys: the estimates are what the theory says they are."""

from __future__ import annotations

import random

import numpy as np
import pytest

import soberan.curate.minhash as mh


def _words(rng, n):
    return [f"w{rng.randrange(100_000)}" for _ in range(n)]


def _shingles(words, n=5):
    return np.unique(mh.ngram_hashes(words, n))


def test_signature_agreement_estimates_jaccard():
    rng = random.Random(1)
    p = mh.MinHashParams(shingle_size=5, bands=32, rows=8)  # 256 permutations: tighter estimate
    base = _words(rng, 600)
    for edits in (5, 30, 120):
        other = list(base)
        for j in rng.sample(range(len(base)), edits):
            other[j] = "changed"
        a, b = _shingles(base), _shingles(other)
        true_j = len(np.intersect1d(a, b)) / len(np.union1d(a, b))
        sig = mh.signatures([a, b], p)
        est = (sig[0] == sig[1]).mean()
        assert abs(est - true_j) < 0.1, (edits, est, true_j)


def test_band_keys_agree_only_on_equal_bands():
    p = mh.MinHashParams()
    rng = np.random.default_rng(0)
    sig = rng.integers(0, 2**32, size=(3, p.permutations), dtype=np.uint32)
    sig[1] = sig[0]
    sig[1, :p.rows] += 1  # band 0 differs
    sig[2, p.rows:] = sig[0, p.rows:] + 1  # only band 0 the same
    sig[2, :p.rows] = sig[0, :p.rows]
    k = mh.band_keys(sig, p)
    assert k[0, 0] != k[1, 0] and (k[0, 1:] == k[1, 1:]).all()
    assert k[0, 0] == k[2, 0] and (k[0, 1:] != k[2, 1:]).all()
    # the same rows in different bands give different keys: bands never collide with each other
    same = np.tile(sig[0, :p.rows], p.bands)[None, :]
    assert len(set(mh.band_keys(same, p)[0].tolist())) == p.bands


def test_chunking_does_not_change_signatures(monkeypatch):
    rng = random.Random(3)
    docs = [_shingles(_words(rng, rng.randrange(1, 400))) for _ in range(50)] + [np.array([], np.uint64)]
    p = mh.MinHashParams()
    whole = mh.signatures(docs, p)
    monkeypatch.setattr(mh, "CHUNK_ELEMENTS", p.permutations * 7)  # 7 shingles per chunk
    assert (mh.signatures(docs, p) == whole).all()
    assert (whole[-1] == mh.EMPTY).all()


def test_short_text_is_one_shingle_and_ngram_hashes_are_positional():
    assert len(mh.ngram_hashes(["a", "b"], 5)) == 1
    assert len(mh.ngram_hashes([], 5)) == 0
    h = mh.ngram_hashes("a b c d e f".split(), 5)
    assert len(h) == 2 and h[0] != h[1]
    assert mh.ngram_hashes("b a c d e".split(), 5)[0] != mh.ngram_hashes("a b c d e".split(), 5)[0]


@pytest.mark.parametrize("s, expected", [(0.9, 0.99), (0.5, 0.1)])
def test_lsh_candidate_probability(s, expected):
    """FineWeb's 14x8 finds pairs at Jaccard 0.9 almost always and at 0.5 rarely:
    P = 1 - (1 - s^8)^14."""
    p = mh.MinHashParams()
    prob = 1 - (1 - s ** p.rows) ** p.bands
    assert (prob > expected) if s > p.threshold else (prob < expected)
    assert 0.71 < p.threshold < 0.73
