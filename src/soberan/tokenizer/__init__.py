"""`soberan tokenizer`: keep, extend or replace the base tokenizer, and measure what it costs.

A tokenizer made for English spends two to five times more tokens on Korean, Thai or Arabic, and
every extra token is paid for in training compute, context length and serving cost. The stage
reads the curated corpus (`curated/`), holds out a few documents per language, and then, as
`[tokenizer] mode` says:

- keep: saves the base as it is (in the HF format);
- extend: continues the base's BPE on the corpus (extend.py): new tokens get new ids after the
  base's, every original id is unchanged, and `new_token_init.json` tells the train stage which
  base ids each new token is made of;
- replace: trains a byte-level BPE from scratch (train.py).

It writes `tokenizer/final/` (loads with `AutoTokenizer.from_pretrained` and vLLM as is),
`tokenizer/fertility.json` and a chart (before and after, on the held-out text), and
`tokenizer/training_docs.parquet` (which documents taught the tokenizer: take-downs need it), and
records all of them in the ledger. A killed run resumes from the shards it had counted.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from soberan import stages
from soberan.common import json_sha256

if TYPE_CHECKING:  # soberan.config imports this package for its settings: no import cycle
    from soberan.tokenizer.config import TokenizerSettings
    from soberan.workspace import Workspace

STAGE = "tokenizer"
# The config sections this stage reads (the stage registry keeps them): hashed into each artifact
# it records, and what `soberan build` compares to decide whether the stage must run again.
CONFIG_SECTIONS = stages.get(STAGE).config_sections
VERSION = "1"  # bump when the output for the same input and settings changes
LABELS = {"extend": "extended", "replace": "trained"}


@dataclass
class TokenizerSummary:
    mode: str
    base: str
    path: Path
    vocab_size: int
    base_vocab_size: int
    new_tokens: int = 0  # ids added after the base's (learned tokens and special tokens)
    learned_tokens: int = 0
    unreachable: int = 0  # learned tokens their own string does not produce; always 0
    train_docs: int = 0
    train_chars: int = 0
    held_out_docs: int = 0
    before: str = ""  # labels in fertility.json
    after: str = ""
    fertility_before: dict[str, float] = field(default_factory=dict)  # tokens per character
    fertility_after: dict[str, float] = field(default_factory=dict)
    report: Path | None = None
    up_to_date: bool = False
    artifact: dict | None = None

    # Where the files are and what this call found: not facts about the tokenizer, so not kept
    # in its ledger record.
    _NOT_RECORDED = ("path", "report", "up_to_date", "artifact")

    def meta(self) -> dict:
        """The fields the tokenizer's ledger record keeps, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._NOT_RECORDED}

    @classmethod
    def from_record(cls, art: dict, path: Path, report: Path) -> TokenizerSummary:
        """The summary an earlier run recorded in `art`, for a run that finds it up to date."""
        kept = {f.name for f in fields(cls)} - set(cls._NOT_RECORDED)
        return cls(**{k: v for k, v in art["meta"].items() if k in kept}, path=path, report=report,
                   up_to_date=True, artifact=art)


@dataclass
class _Corpus:
    """The curated corpus the tokenizer learns from (none in keep mode without one)."""

    languages: list[str]
    path: Path | None
    record: dict | None  # its ledger record

    @property
    def inputs(self) -> list[str]:
        """The tokenizer's ledger inputs: the corpus's artifact hash."""
        return [self.record["hash"]] if self.record else []


@dataclass
class _Specials:
    """The special tokens and chat template the saved tokenizer declares."""

    bos: str | None
    eos: str | None
    pad: str | None
    unk: str | None
    template: str | None
    wanted: list[str]  # every special token the tokenizer must hold, in order


def settings(ws: Workspace, **overrides) -> TokenizerSettings:
    """The workspace's [tokenizer] settings with command-line overrides, validated again."""
    from soberan.tokenizer.config import TokenizerSettings

    body = ws.config.tokenizer.model_dump()
    body.update({k: v for k, v in overrides.items() if v is not None})
    return TokenizerSettings.model_validate(body)


def config_hash(ws: Workspace, s: TokenizerSettings | None = None) -> str:
    # The same digest as Config.section_hash(*CONFIG_SECTIONS) when nothing is overridden.
    s = s or settings(ws)
    body = {"tokenizer": s.model_dump(mode="json"), "heldout": ws.config.heldout.model_dump(mode="json")}
    return json_sha256(body)


def run(ws: Workspace, *, mode: str | None = None, base: str | None = None, new_tokens: int | None = None,
        vocab_size: int | None = None, force: bool = False) -> TokenizerSummary:
    """Make `tokenizer/final/` as the config (and any override) says; see the module docstring."""
    from soberan import hf as formats  # the tokenizer formats are core: train reads them too
    from soberan.config import ConfigError
    from soberan.documents import tree_sha256
    from soberan.freshness import freshness
    from soberan.tokenizer import corpus, extend

    s = settings(ws, mode=mode, base=base, new_tokens=new_tokens, vocab_size=vocab_size)
    src = _curated(ws, s)
    corpus_dir = src.path
    chash = config_hash(ws, s)
    base_spec = base_tokenizer_spec(ws, s.base)
    base_path = formats.resolve(base_spec, ws.config.root)
    base_sha = tree_sha256(base_path)
    out = ws.stage_dir(STAGE)
    final = out / "final"

    fresh = freshness(ws, STAGE, config_hash=chash, inputs={"curate": src.record},
                      meta={"base_sha256": base_sha, "version": VERSION}, takedowns=False)
    if not force and fresh.current:
        return TokenizerSummary.from_record(fresh.artifact, final, out / "fertility.json")

    for code in list(s.eval_texts):
        if not ws.config.resolve(s.eval_texts[code]).is_file():
            raise ConfigError(f"tokenizer.eval_texts.{code}: no file {ws.config.resolve(s.eval_texts[code])}")
    base_tok = formats.load(base_spec, ws.config.root)
    if s.mode == "extend" and base_tok.style == "other":
        raise ConfigError(f"tokenizer.base: {base_tok.name} is neither SentencePiece-style nor byte-level "
                          "BPE; extend needs a BPE tokenizer")
    plan = corpus.plan(corpus_dir, src.languages, ws.config.heldout) if corpus_dir else corpus.Plan(src.languages)
    if s.mode != "keep" and plan.trainable_docs() <= 0:
        raise FileNotFoundError(f"{corpus_dir}: no curated document in {src.languages} to learn from "
                                "(check project.languages or tokenizer.languages)")
    roles: list[dict] = []  # which documents taught the tokenizer (take-downs need it)
    work = ws.root / "work" / STAGE
    specials = _specials(s, base_tok)
    tok, learned = _learn(s, base_tok, src, plan, base_sha, specials.wanted, roles, work)
    train_docs = [r for r in roles if r["role"] == "train"]
    base_vocab_size = base_tok.vocab_size if s.mode != "replace" else 0
    parts = _add_special_tokens(tok, specials.wanted, base_tok, learned)
    unreachable = len(extend.unreachable(tok, learned.new_tokens)) if learned else 0
    _save_final(out, tok, specials, s.mode, base_tok, base_vocab_size, parts)

    before, after, report, fert_path = _fertility(ws, s, corpus_dir, plan, base_tok, final, out)
    summary = TokenizerSummary(
        mode=s.mode, base=base_tok.name, path=final, vocab_size=tok.get_vocab_size(with_added_tokens=True),
        base_vocab_size=base_vocab_size, new_tokens=len(parts) if s.mode != "replace" else 0,
        learned_tokens=len(learned.new_tokens) if learned else 0, unreachable=unreachable,
        train_docs=len(train_docs), train_chars=sum(r["chars"] for r in train_docs),
        held_out_docs=plan.held_out_units, before=before, after=after,
        fertility_before={k: round(v.tokens_per_char, 4) for k, v in report[before].items()},
        fertility_after={k: round(v.tokens_per_char, 4) for k, v in report[after].items()},
        report=fert_path)
    _record(ws, s, summary, src, roles, chash, base_sha)
    shutil.rmtree(work, ignore_errors=True)  # cached counts hold corpus words: no stale copies
    return summary


def _curated(ws: Workspace, s: TokenizerSettings) -> _Corpus:
    from soberan.documents import shard_paths

    languages = s.languages or list(ws.config.project.languages)
    cur = ws.ledger.latest_artifact("curate", "corpus")
    if cur is None and s.mode != "keep":
        raise FileNotFoundError(f"{ws.root}: no curated corpus in the ledger; run `soberan curate` first")
    corpus_dir = ws.root / cur["path"] if cur else None
    if corpus_dir is not None and s.mode != "keep" and not shard_paths(corpus_dir):
        raise FileNotFoundError(f"{corpus_dir}: the curated corpus has no shards")
    return _Corpus(languages, corpus_dir, cur)


def _specials(s: TokenizerSettings, base_tok) -> _Specials:
    """The config's special tokens, else the base's; a tokenizer trained from scratch has its own."""
    from soberan import hf as formats

    bos = s.bos_token or (base_tok.bos if s.mode != "replace" else "<s>")
    eos = s.eos_token or (base_tok.eos if s.mode != "replace" else "</s>")
    pad = s.pad_token or (base_tok.pad if s.mode != "replace" else None)
    unk = base_tok.unk if s.mode != "replace" else None
    template = formats.chat_template_for(s.chat_template, base_tok, s.mode)
    wanted = list(dict.fromkeys(t for t in [bos, eos, pad, *formats.template_tokens(template), *s.special_tokens] if t))
    return _Specials(bos, eos, pad, unk, template, wanted)


def _learn(s: TokenizerSettings, base_tok, src: _Corpus, plan, base_sha: str, wanted: list[str],
           roles: list[dict], work: Path):
    """(the new tokenizer, what extend learned or None) as `mode` says; `roles` receives the
    documents read. Extension counts words shard by shard into `work`, so a killed run resumes."""
    from tokenizers import Tokenizer

    from soberan.documents import shard_paths
    from soberan.tokenizer import corpus, extend
    from soberan.ui import progress

    corpus_dir, learned = src.path, None
    with progress() as bar:
        if s.mode == "extend":
            key = json_sha256([VERSION, base_sha, src.languages, plan.split.key()])
            job = bar.add_task("counting words", total=len(shard_paths(corpus_dir)))
            counts = corpus.cached_counts(corpus_dir, plan, lambda texts: extend.count_words(texts, base_tok),
                                          work / "counts", key, s.max_train_chars, roles,
                                          on_shard=lambda: bar.advance(job))
            job = bar.add_task("learning new tokens", total=s.new_tokens)
            learned = extend.learn(counts, base_tok, s.new_tokens, s.min_frequency,
                                   progress=lambda k: bar.advance(job, k))
            bar.update(job, total=len(learned.new_tokens), completed=len(learned.new_tokens))
            tok = extend.build(base_tok, learned)
        elif s.mode == "replace":
            from soberan.tokenizer.train import train_bpe

            n_docs = plan.trainable_docs()
            job = bar.add_task("training byte-level BPE", total=n_docs)

            def texts():
                for t in corpus.training_texts(corpus_dir, plan, s.max_train_chars, roles):
                    bar.advance(job)
                    yield t

            tok = train_bpe(texts(), s.vocab_size, wanted, s.min_frequency, length=n_docs)
        else:
            tok = Tokenizer.from_str(base_tok.tokenizer.to_str())
    return tok, learned


def _add_special_tokens(tok, wanted: list[str], base_tok, learned) -> dict[int, list[int]]:
    """Special tokens the chat template or the config need and the base lacks: new ids after the
    learned ones, initialised from how the base spells their text. Returns the base ids each
    new id is made of (new_token_init.json)."""
    from tokenizers import AddedToken

    missing = [t for t in wanted if tok.token_to_id(t) is None]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
    parts: dict[int, list[int]] = {t.id: t.parts for t in (learned.new_tokens if learned else [])}
    for t in missing:
        parts[tok.token_to_id(t)] = base_tok.tokenizer.encode(t, add_special_tokens=False).ids
    return parts


def _save_final(out: Path, tok, sp: _Specials, mode: str, base_tok, base_vocab_size: int,
                parts: dict[int, list[int]]) -> None:
    """`out/final` whole or not at all: written beside it, then renamed into place."""
    from soberan import hf as formats
    from soberan.tokenizer import extend

    final, tmp = out / "final", out / ".tmp-final"
    shutil.rmtree(tmp, ignore_errors=True)
    formats.save(tok, tmp, bos=sp.bos, eos=sp.eos, unk=sp.unk, pad=sp.pad, chat_template=sp.template)
    if mode != "replace":
        extend.write_init_map(tmp / "new_token_init.json", base_tok, base_vocab_size, parts)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def _fertility(ws: Workspace, s: TokenizerSettings, corpus_dir: Path | None, plan, base_tok, final: Path,
               out: Path):
    """Fertility before and after, on the held-out documents and the configured eval texts:
    (before label, after label, report, fertility.json)."""
    from soberan import hf as formats
    from soberan.tokenizer import fertility

    sets = eval_sets(ws, s, corpus_dir, plan)
    before = Path(base_tok.name).name if base_tok.name not in formats.BUILTIN else base_tok.name
    after = LABELS.get(s.mode, before)
    report: fertility.Report = {before: fertility.measure(base_tok, sets)}
    if s.mode != "keep":
        report[after] = fertility.measure(formats.load(final), sets)
    fert_path = fertility.write_json(report, out / "fertility.json", before=before, after=after)
    if sets:
        fertility.chart(report, out / "fertility.png")
    return before, after, report, fert_path


def _record(ws: Workspace, s: TokenizerSettings, summary: TokenizerSummary, src: _Corpus, roles: list[dict],
            chash: str, base_sha: str) -> None:
    """The ledger records: which documents taught it (not in keep mode), the tokenizer, and its
    fertility report. Sets `summary.artifact`."""
    from soberan.tokenizer import corpus

    out = ws.stage_dir(STAGE)
    if s.mode != "keep":
        corpus.write_roles(roles, out / "training_docs.parquet")
        ws.ledger.record_artifact(stage=STAGE, kind="training_input", path=out / "training_docs.parquet",
                                  inputs=src.inputs, config_hash=chash,
                                  meta={"train_docs": summary.train_docs, "train_chars": summary.train_chars,
                                        "held_out_docs": summary.held_out_docs, "languages": src.languages})
    meta = summary.meta()
    meta.update(version=VERSION, base_sha256=base_sha, chat_template=s.chat_template)
    summary.artifact = ws.ledger.record_artifact(stage=STAGE, kind="tokenizer", path=summary.path, inputs=src.inputs,
                                                 config_hash=chash, meta=meta)
    ws.ledger.record_artifact(stage=STAGE, kind="fertility", path=summary.report,
                              inputs=[summary.artifact["hash"]], config_hash=chash,
                              meta={"before": summary.before, "after": summary.after})


def base_tokenizer_spec(ws: Workspace, spec: str) -> str:
    """`[tokenizer] base` as formats.load reads it: a base model's builtin name or .gguf file is
    imported once (soberan.basemodel) and its HF folder's tokenizer used."""
    from soberan import basemodel

    if basemodel.is_base_spec(spec):
        return str(basemodel.resolve(ws, spec, ws.config.train.base_model_license))
    return spec


def eval_sets(ws: Workspace, s: TokenizerSettings, corpus_dir: Path | None, plan) -> list:
    """Held-out text per language: the held-out curated documents plus `eval_texts` files."""
    from soberan.tokenizer import corpus, fertility

    texts = corpus.held_out_texts(corpus_dir, plan) if corpus_dir and plan.held_out_units else {}
    for code, path in s.eval_texts.items():
        lines = [ln for ln in ws.config.resolve(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
        texts.setdefault(code, []).extend(lines)
    return [fertility.eval_set(code, t) for code, t in sorted(texts.items()) if t]


def workspace_eval_sets(ws: Workspace) -> list:
    """The held-out text `run` measures on, for `soberan tokenizer report`."""
    from soberan.tokenizer import corpus

    s = settings(ws)
    cur = ws.ledger.latest_artifact("curate", "corpus")
    corpus_dir = ws.root / cur["path"] if cur else None
    languages = s.languages or list(ws.config.project.languages)
    plan = corpus.plan(corpus_dir, languages, ws.config.heldout) if corpus_dir else corpus.Plan(languages)
    return eval_sets(ws, s, corpus_dir, plan)

