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
    model_config = ConfigDict(extra="forbid")


class NormalizeSettings(_Strict):
    # "auto": run ftfy only on text that holds a character a mis-decoded UTF-8 lead byte becomes
    # (Latin-1, Cyrillic, box drawing); "always" runs it on every document.
    ftfy: Literal["auto", "always", "never"] = "auto"


class LangIdSettings(_Strict):
    # Minimum lid.176 probability to accept a document as a target language. By default each
    # pack's thresholds["language_score"] (FineWeb2's per-language value; 0.65, FineWeb's English
    # threshold, where it gives none); `min_score` overrides every pack, `min_scores` one language.
    min_score: float | None = Field(None, ge=0, le=1)
    min_scores: dict[str, float] = {}
    # A document whose main language is not a target: "drop" it, or "keep_target_lines" when at
    # least `min_target_share` of its characters are in lines of a target language.
    mixed: Literal["drop", "keep_target_lines"] = "keep_target_lines"
    min_target_share: float = Field(0.5, gt=0, le=1)
    min_line_chars: int = 20  # shorter lines take the language of the line before them


class QualitySettings(_Strict):
    # Names from soberan.curate.quality.QUALITY_FILTERS, applied in this order.
    filters: list[str] = ["gopher_repetition", "gopher_quality", "fineweb_quality"]
    clean_lines: bool = True  # drop boilerplate / navigation lines before the filters
    # Sources whose documents skip the document-level filters (line cleanup still runs). The
    # Gopher and FineWeb rules were fitted to web pages; edited institutional text such as
    # statutes repeats its formulae and numbers its lists by design and would be dropped.
    exempt_sources: list[str] = []
    # Trusted text (statutes, a news agency) that `soberan calibrate` fits the thresholds to
    # keep; empty: the corpus is its own reference.
    reference_sources: list[str] = []
    # Values laid over every pack's thresholds before the per-language overrides below:
    # "short_social" for posts, reviews and tweets (soberan.lang.PRESETS, docs/curate.md).
    preset: Literal["", "short_social"] = ""
    # Threshold overrides per language, laid over the pack's values (FineWeb2's), e.g.
    # [curate.quality.thresholds.ko] min_words = 30. Names as in soberan.lang.BASE_THRESHOLDS;
    # a rule is switched off with 0 (or an empty table for top_n_grams / dup_n_grams).
    thresholds: dict[str, dict[str, Any]] = {}

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
    # National formats to redact, by language pack; empty means project.languages.
    languages: list[str] = []


class FuzzyDedupSettings(_Strict):
    # MinHash LSH (Broder 1997; Leskovec et al., Mining of Massive Datasets ch. 3). FineWeb's
    # setting: 5-gram word shingles, 14 bands of 8 rows (112 hashes), which finds pairs above
    # a Jaccard similarity of about (1/14)^(1/8) = 0.72.
    shingle_size: int = Field(5, ge=1)
    bands: int = Field(14, ge=1)
    rows: int = Field(8, ge=1)
    seed: int = 1


class BenchmarkFile(_Strict):
    name: str
    path: str  # JSONL, TSV or Parquet, relative to the workspace
    fields: list[str] = ["text"]


class DecontamSettings(_Strict):
    # Documents sharing a 13-gram of words with a benchmark item are removed, as in GPT-3
    # (Brown et al. 2020, appendix C) and Llama 2 (Touvron et al. 2023, appendix A.6).
    ngram: int = Field(13, ge=3)
    min_matches: int = Field(1, ge=1)  # distinct shared n-grams needed to call a document contaminated
    # "document": drop a contaminated document (GPT-3's rule). "lines": remove only the lines that
    # hold the shared n-grams, and drop the document when less than `min_kept_share` of its
    # characters is left: a long page that quotes one test item keeps the rest of its text.
    mode: Literal["document", "lines"] = "document"
    min_kept_share: float = Field(0.5, ge=0, le=1)
    benchmarks: list[str] = []  # benchmark names known to `soberan evaluate`
    files: list[BenchmarkFile] = []  # or explicit files


class CurateSettings(_Strict):
    steps: list[StepName] = list(DEFAULT_STEPS)
    batch_size: int = Field(1000, ge=1)  # documents per Arrow batch inside a worker
    workers: int = Field(0, ge=0)  # processes for the per-shard steps; 0 = one per CPU core
    # Where the per-shard steps run: "local" (a process pool) or "ray" (Ray Data; `ray_address`
    # joins a cluster, unset starts a local Ray). `soberan build` reads these; the CLI flags of
    # `soberan curate` override them.
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    memory_limit: str = "2GB"  # DuckDB's limit for the corpus-wide steps; beyond it, it spills to disk
    keep_work: bool = False  # keep work/curate/ (hashes, signatures) after a successful run
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
