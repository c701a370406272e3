"""Pretraining and continued pretraining: corpus → packed data → model/final/, all in the ledger."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from soberan.config import ConfigError
from soberan.documents import tree_sha256
from soberan.hf import load_model, load_tokenizer
from soberan.train import TrainSummary
from soberan.workspace import Workspace


# --- inputs -----------------------------------------------------------------------------------

def artifact_at(ws: Workspace, path: Path) -> dict | None:
    """The newest current artifact record of a path inside the workspace, if any."""
    rel = ws.ledger.rel(path).rstrip("/")
    found = [a for a in ws.ledger.artifacts() if a["path"].rstrip("/") == rel]
    return max(found, key=lambda a: a["seq"]) if found else None


def upstream(ws: Workspace, override: Path | str | None, stage: str, kind: str, what: str) -> tuple[Path, dict | None]:
    if override is not None:
        p = ws.config.resolve(override)
        if not p.exists():
            raise FileNotFoundError(f"{what} {p} does not exist")
        return p, artifact_at(ws, p)
    rec = ws.ledger.latest_artifact(stage, kind)
    if rec is None:
        raise ConfigError(f"{ws.root}: no {what} in the ledger yet (run `soberan {stage}` first)")
    p = ws.root / rec["path"]
    if not p.exists():
        raise FileNotFoundError(f"{what} {rec['path']} (ledger record {rec['seq']}) is missing")
    return p, rec


def tokenizer_folder(ws: Workspace, spec: Path | str, out: Path) -> Path:
    """An HF tokenizer folder for `spec`: the folder itself, or, for a base that the tokenizer
    stage reads (a SentencePiece .model, a Tekken .json, "mistral-v1", "tekken"), its HF form
    written once to `out/tokenizer-base/` by the tokenizer stage's own converter."""
    p = ws.config.resolve(spec)
    if p.is_dir() and (p / "tokenizer.json").exists():
        return p
    from soberan.hf import load, save

    loaded = load(str(spec), ws.config.root)
    target = out / "tokenizer-base"
    save(loaded.tokenizer, target, bos=loaded.bos, eos=loaded.eos, unk=loaded.unk, pad=loaded.pad,
         chat_template=loaded.chat_template)
    return target


def content_hash(path: Path, rec: dict | None) -> str:
    return rec["sha256"] if rec else tree_sha256(path)


def read_new_token_init(tokenizer_dir: Path) -> dict | None:
    """`new_token_init.json` written by `soberan tokenizer extend`, checked."""
    p = Path(tokenizer_dir) / "new_token_init.json"
    if not p.exists():
        return None
    info = json.loads(p.read_text())
    base = int(info["base_vocab_size"])
    new = {int(k): [int(x) for x in v] for k, v in info["new_tokens"].items()}
    for k, parts in new.items():
        if k < base or any(x >= base or x < 0 for x in parts):
            raise ValueError(f"{p}: new token {k} must be >= base_vocab_size {base} and its parts below it")
    return {"base_vocab_size": base, "base": info.get("base"), "new_tokens": new}


def _policy_check(ws: Workspace):
    from soberan.policy import PolicyError, document_violation

    pol = ws.config.policy
    seen_ok: set[tuple[str, str]] = set()

    def check(t: pa.Table) -> None:
        pairs = t.select(["license", "jurisdiction"]).group_by(["license", "jurisdiction"]).aggregate([])
        for lic, jur in zip(pairs.column("license").to_pylist(), pairs.column("jurisdiction").to_pylist()):
            if (lic, jur) in seen_ok:
                continue
            bad = document_violation(pol, lic, jur)
            if bad:
                m = pc.and_(pc.equal(t.column("license"), lic), pc.equal(t.column("jurisdiction"), jur))
                doc = t.filter(m).column("id")[0].as_py()
                raise PolicyError(f"document {doc} (source {t.filter(m).column('source')[0].as_py()}): {bad[1]}")
            seen_ok.add((lic, jur))

    return check


# --- the model --------------------------------------------------------------------------------

def adapt_vocab(model, tokenizer, tokenizer_dir: Path, s, say) -> int | None:
    """Fit a base model's embeddings to the tokenizer. With an extended tokenizer, resize and set
    each new row to the mean of its parts (see `init_new_embeddings`); returns the first new id,
    from which the embedding stage trains. None when the vocabulary is unchanged."""
    from soberan.train.model import init_new_embeddings, round_vocab

    rows = model.get_input_embeddings().weight.shape[0]
    n = len(tokenizer)
    info = read_new_token_init(tokenizer_dir)
    if info is None:
        if n > rows:
            raise ValueError(f"tokenizer {tokenizer_dir}: {n} ids do not fit the base model's {rows} embedding rows, "
                             "and it has no new_token_init.json saying how to make the new ones: was it made "
                             "for another base? (`soberan tokenizer run` with mode = \"extend\" writes one)")
        return None
    if info["base_vocab_size"] > rows:
        raise ValueError(f"new_token_init.json says the base vocabulary has {info['base_vocab_size']} tokens "
                         f"but the base model has only {rows} embedding rows: wrong base model?")
    if max(info["new_tokens"], default=0) >= n:
        raise ValueError("new_token_init.json names token ids beyond the tokenizer's vocabulary")
    if n > rows:
        model.resize_token_embeddings(round_vocab(n), mean_resizing=False)
    noise = s.new_token_noise if s.new_token_init == "mean_noise" else 0.0
    k = init_new_embeddings(model, info["new_tokens"], noise=noise, seed=s.seed)
    say(f"initialized {k} new token embeddings from the mean of their parts"
        + (f" plus noise ({noise} std)" if noise else ""))
    return info["base_vocab_size"]


def check_tokenizer_fits(tokenizer, tokenizer_dir: Path, base_model: str) -> None:
    """Before any training: the tokenizer must agree with the base model's own on every id the
    base knows (keep or extend the base's tokenizer, never another model's), and fit its rows.
    A mismatch would train silently on wrong embeddings; here it is an error naming both."""
    cfg = json.loads(Path(base_model, "config.json").read_text())
    rows = cfg.get("vocab_size")
    info = read_new_token_init(tokenizer_dir)
    base_n = info["base_vocab_size"] if info else len(tokenizer)
    if rows is not None and base_n > rows:
        raise ValueError(f"tokenizer {tokenizer_dir}: its base vocabulary has {base_n} ids but the base model "
                         f"{base_model} has {rows} embedding rows: the tokenizer was made for another model")
    own = Path(base_model, "tokenizer.json")
    if not own.exists():
        return
    from tokenizers import Tokenizer

    base_vocab = Tokenizer.from_file(str(own)).get_vocab(with_added_tokens=True)
    ours = tokenizer.get_vocab()
    inv = {i: t for t, i in base_vocab.items() if i < base_n}
    wrong = [(i, t) for i, t in sorted(inv.items()) if ours.get(t) != i]
    if wrong:
        i, t = wrong[0]
        raise ValueError(f"tokenizer {tokenizer_dir} does not match base model {base_model}: {len(wrong)} of its "
                         f"{len(inv)} base ids differ (e.g. id {i} is {t!r} in the base, {ours.get(t)!r} here); "
                         "set [tokenizer] base to the base model")


# A new embedding row is learned from the contexts it occurs in. A rule of thumb, not a fitted
# threshold: a row seen fewer than about this many times in the planned tokens has had little
# chance to move from its initialization, so a model that starts behind is likely to stay there
# (benchmarks/adapt_base.py measures the real curves for SmolLM2; README).
MIN_OCCURRENCES_PER_NEW_ROW = 1000


def step0_advice(step0: dict, tokenizer, first_new: int, heldout: dict[str, list[str]],
                 planned_tokens: int) -> str | None:
    """What the step-0 measurement says about an extended tokenizer at this budget: the held-out
    gap between the base and the initialized model, and whether the planned tokens let the new
    rows be seen often enough to close it. Fills step0 with the figures; returns a warning."""
    ids = [i for texts in heldout.values() for t in texts for i in tokenizer(t, add_special_tokens=False)["input_ids"]]
    n_new = max(len(tokenizer) - first_new, 1)
    share = sum(1 for i in ids if i >= first_new) / max(len(ids), 1)
    per_row = planned_tokens * share / n_new
    step0.update(new_token_share=round(share, 4), planned_tokens=planned_tokens,
                 occurrences_per_new_row=round(per_row, 1))
    worse = {k: v for k, v in step0.get("initialized", {}).items() if v > step0.get("base", {}).get(k, float("inf"))}
    if worse and per_row < MIN_OCCURRENCES_PER_NEW_ROW:
        gap = ", ".join(f"{k} {step0['base'][k]:.3f} → {v:.3f}" for k, v in worse.items())
        return (f"the extended tokenizer starts worse than the base (held-out bpb {gap}), and the planned "
                f"{planned_tokens:,} tokens show each of its {n_new:,} new rows only ~{per_row:,.0f} times "
                f"(< {MIN_OCCURRENCES_PER_NEW_ROW:,}): unlikely to close the gap; [tokenizer] mode = \"keep\" "
                "is the better recipe at this budget")
    return None


def make_model(s, tokenizer, tokenizer_dir: Path, base_model: str | None, resume_from: Path | None, say,
               heldout: dict[str, list[str]] | None = None, step0: dict | None = None):
    """(model, first new token id or None, description). For a base model with an extended
    tokenizer, `step0` receives the held-out bpb of the base as it is and as initialized."""
    step0 = {} if step0 is None else step0
    import torch

    from soberan.bpb import bpb_by_language
    from soberan.train.model import build_model, llama_config

    if resume_from is not None:
        model = load_model(resume_from, dtype=torch.float32)
        first_new = None
        if base_model:
            info = read_new_token_init(tokenizer_dir)
            first_new = info["base_vocab_size"] if info else None
        return model, first_new, f"resumed from {resume_from.name}"
    if base_model:
        check_tokenizer_fits(tokenizer, tokenizer_dir, base_model)
        model = load_model(base_model, dtype=torch.float32)
        before = None
        if heldout and read_new_token_init(tokenizer_dir) and Path(base_model, "tokenizer.json").exists():
            # The base as it is, on the same held-out text, before its vocabulary changes.
            before = bpb_by_language(model, load_tokenizer(Path(base_model)), heldout)
        first_new = adapt_vocab(model, tokenizer, tokenizer_dir, s, say)
        if before is not None and first_new is not None:
            step0.update(base=before, initialized=bpb_by_language(model, tokenizer, heldout))
        return model, first_new, f"continued pretraining of {base_model}"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    cfg = llama_config(s.depth, len(tokenizer), s.seq_len, tie_embeddings=s.tie_embeddings,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=pad)
    if read_new_token_init(tokenizer_dir) and s.embed_stage_steps:
        say("[yellow]note:[/yellow] from scratch there are no base embeddings to start new tokens from; "
            "embed_stage_steps is ignored")
    return build_model(cfg, seed=s.seed), None, f"Llama from scratch, depth {s.depth}"


def compile_backend(setting: str) -> str | None:
    """The torch.compile backend for `[train] compile`, or None to run eager."""
    import torch

    if setting == "auto":
        return "inductor" if torch.cuda.is_available() else None
    return None if setting == "off" else setting


# --- the run ----------------------------------------------------------------------------------

@dataclass
class Inputs:
    """What a pretraining run is made from, resolved."""

    out: Path
    role: str
    corpus: Path
    corpus_rec: dict | None
    tok_dir: Path
    tok_rec: dict | None
    base_model: str | None

    @property
    def hashes(self) -> list[str]:
        return [r["hash"] for r in (self.corpus_rec, self.tok_rec) if r]


def _resolve(ws: Workspace, acc, *, corpus_dir, tokenizer_dir, output_dir, base_model, role) -> Inputs:
    cfg, s = ws.config, ws.config.train
    out = cfg.resolve(output_dir) if output_dir is not None else ws.stage_dir("train")
    base_model = base_model or s.base_model
    if base_model:
        from soberan import basemodel

        with acc.main_process_first():
            base_model = str(basemodel.resolve(ws, base_model, s.base_model_license))
    corpus, corpus_rec = upstream(ws, corpus_dir, "curate", "corpus", "curated corpus")
    if tokenizer_dir is not None:
        with acc.main_process_first():
            tokenizer_dir = tokenizer_folder(ws, tokenizer_dir, out)
    tok_dir, tok_rec = upstream(ws, tokenizer_dir, "tokenizer", "tokenizer", "tokenizer")
    return Inputs(out, role or ("main" if output_dir is None else out.name), corpus, corpus_rec,
                  tok_dir, tok_rec, base_model)


def prepare_data(ws: Workspace, acc, inp: Inputs, tokenizer, say, progress):
    """Pack the corpus (and replay data) into `out/data`, hold out text per language, record
    both in the ledger; returns (pack summary, packed data, data key)."""
    from soberan.train.data import CorpusInput, load_packed, pack, plan_heldout, units

    cfg, s, out, main = ws.config, ws.config.train, inp.out, acc.is_main_process
    h = cfg.heldout
    inputs = [CorpusInput(inp.corpus)]
    if s.replay_path:
        inputs.append(CorpusInput(cfg.resolve(s.replay_path), replay=True, source="replay",
                                  license=s.replay_license, jurisdiction=s.replay_jurisdiction,
                                  lang=s.replay_lang))
    elif not s.replay_source:
        say("[yellow]warning:[/yellow] no English/code replay configured (\\[train] replay_source or "
            "replay_path): the model may forget what it knew; nothing is invented in its place")
    # A second model (a baseline on another corpus) must not train on the main model's held-out
    # text, whichever is trained first: every document with held-out units in the curated
    # corpus's split, or in an earlier main run's held-out folder, is held out whole.
    always: set[str] = set()
    curated = ws.ledger.latest_artifact("curate", "corpus")
    if curated and (ws.root / curated["path"]).resolve() != inp.corpus.resolve() and (ws.root / curated["path"]).exists():
        always |= plan_heldout(units([CorpusInput(ws.root / curated["path"])]), h).touches()
    prior = ws.ledger.latest_artifact("train", "heldout")
    if prior and (ws.root / prior["path"]).resolve() != (out / "heldout").resolve():
        import pyarrow.parquet as pq

        for p in sorted((ws.root / prior["path"]).glob("*.parquet")):
            t = pq.read_table(p)
            always |= set(t.column("doc_id" if "doc_id" in t.column_names else "id").to_pylist())
    key = {"corpus": content_hash(inp.corpus, inp.corpus_rec), "tokenizer": content_hash(inp.tok_dir, inp.tok_rec),
           "replay": tree_sha256(inputs[1].path) if len(inputs) > 1 else None,
           "replay_decl": [s.replay_license, s.replay_jurisdiction, s.replay_lang] if len(inputs) > 1 else None,
           "heldout": h.model_dump(),
           "always": hashlib.sha256("\n".join(sorted(always)).encode()).hexdigest()}

    def on_unit(unit, table):
        ws.ledger.write_decisions("train", f"{out.name}-{unit.key}", table)

    with acc.main_process_first():
        summary = pack(inputs, tokenizer, out, key=key,
                       heldout=lambda us: plan_heldout(us, h, always),
                       on_unit=on_unit if main else None, check=_policy_check(ws),
                       progress=progress if main else None)
    say(("reusing" if summary.reused else "packed") + f" {summary.n_tokens:,} tokens of {summary.n_docs:,} "
        f"documents in {ws.ledger.rel(summary.data_dir)}; held-out units per language: {summary.heldout_docs or 'none'}")
    if main:
        if inp.role == "main" and (out / "heldout").exists():
            _record_once(ws, "heldout", out / "heldout", [inp.corpus_rec["hash"]] if inp.corpus_rec else [],
                         {"docs": summary.heldout_docs, "rule": key["heldout"]})
        _record_once(ws, "training_data", out / "data" / "docs.parquet", inp.hashes,
                     {"role": inp.role, "tokens": summary.n_tokens, "docs": summary.n_docs})
    packed = load_packed(summary.data_dir)
    if s.replay_source:
        replay = pc.equal(packed.docs.column("source"), s.replay_source)
        if not pc.any(replay).as_py():
            raise ConfigError(f"[train] replay_source = {s.replay_source!r}: no such source in the corpus")
        packed.docs = packed.docs.set_column(packed.docs.schema.get_field_index("replay"), "replay",
                                             pc.or_(packed.docs.column("replay"), replay))
    return summary, packed, key


def pretrain(ws: Workspace, *, corpus_dir=None, tokenizer_dir=None, output_dir=None, max_steps=None,
             resume: bool = True, base_model: str | None = None, role: str | None = None,
             console=None, progress=None) -> TrainSummary:
    import numpy as np
    import torch

    from soberan.train import session
    from soberan.train.data import read_heldout
    from soberan.train.mix import MixSampler
    from soberan.train.model import dial

    s = ws.config.train
    sess = session.start(s.precision, "training", console, progress)  # no CUDA: train on the CPU
    acc, main, world, say = sess.acc, sess.main, sess.world, sess.say
    inp = _resolve(ws, acc, corpus_dir=corpus_dir, tokenizer_dir=tokenizer_dir, output_dir=output_dir,
                   base_model=base_model, role=role)
    out = inp.out
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(inp.tok_dir)
    summary, packed, key = prepare_data(ws, acc, inp, tokenizer, say, progress)
    sampler = MixSampler(packed, seq_len=s.seq_len, batch=s.micro_batch * s.grad_accum * world, seed=s.seed,
                         source_weights=s.source_weights, lang_weights=s.lang_weights,
                         replay_share=s.replay_share, max_epochs=s.max_epochs,
                         max_epochs_per_source=s.max_epochs_per_source)
    planned = sampler.planned_shares()
    say("planned token shares: " + ", ".join(f"{k} {v:.1%}" for k, v in planned.items()))
    heldout = read_heldout(out / "heldout", s.eval_max_bytes)

    # --- the model: resume, continue a base model, or build one from scratch
    ckpt, state = session.resume_point(sess, out, resume)
    step0: dict = {}
    model, first_new, how = make_model(s, tokenizer, inp.tok_dir, inp.base_model, ckpt, say,
                                       heldout=heldout if main else None, step0=step0)
    n_params = sum(p.numel() for p in model.parameters())
    say(f"model: {how}; {n_params / 1e6:.1f}M parameters; {world} process(es) on {acc.device}")
    if step0:
        planned_tokens = (max_steps or s.max_steps) * s.micro_batch * s.grad_accum * world * s.seq_len
        advice = step0_advice(step0, tokenizer, first_new, heldout, planned_tokens)
        say("step 0, held-out bits per byte: " + ", ".join(
            f"{k} base {step0['base'][k]:.4f}, initialized {v:.4f} ({v / step0['base'][k] - 1:+.1%})"
            for k, v in step0["initialized"].items() if k in step0["base"]))
        if advice:
            say(f"[yellow]warning:[/yellow] {advice}")
    if ckpt:
        say(f"resuming from {ws.ledger.rel(ckpt)} (step {state['step']})")
    run_key = {"data": key, "base_model": inp.base_model, "depth": None if inp.base_model else s.depth,
               "tie": s.tie_embeddings, "seq_len": s.seq_len, "seed": s.seed,
               "new_token_init": s.new_token_init, "embed_stage_steps": s.embed_stage_steps,
               "source_weights": s.source_weights, "lang_weights": s.lang_weights,
               "replay": [s.replay_source, s.replay_share], "max_epochs": s.max_epochs}
    spec = session.loop_spec(s, out_dir=out, max_steps=max_steps or s.max_steps, micro_batch=s.micro_batch,
                             grad_accum=s.grad_accum, lr=s.lr or (1e-4 if inp.base_model else dial(s.depth).lr),
                             seq_len=s.seq_len, run_key=run_key, warmup_steps=s.warmup_steps,
                             weight_decay=s.weight_decay,
                             embed_stage_steps=s.embed_stage_steps if first_new is not None else 0,
                             first_new_id=first_new, compile=compile_backend(s.compile))

    def on_checkpoint(step: int, path: Path) -> None:
        ws.ledger.record_event("train_tokens", output=ws.ledger.rel(out), step=step, role=inp.role,
                               checkpoint=ws.ledger.rel(path), token_shares=sampler.token_shares())

    def collate(rows):
        t = torch.from_numpy(np.ascontiguousarray(rows))
        return {"input_ids": t, "labels": t}

    res = session.train(sess, model, tokenizer, sampler, collate, spec, heldout=heldout, resume=state,
                        on_checkpoint=on_checkpoint)

    # --- the final model, and what went into it
    final = session.publish(acc, res.model, tokenizer, out)
    shares = sampler.token_shares()
    if main:
        say("held-out bits per byte: " + ", ".join(
            f"{k} {res.bpb_start.get(k, float('nan')):.4f} → {v:.4f}" for k, v in res.bpb_end.items()))
        ws.ledger.record_event("train_tokens", output=ws.ledger.rel(out), step=res.steps, role=inp.role,
                               final=True, token_shares=shares)
    meta = {"role": inp.role, "steps": res.steps, "tokens": sampler.tokens_drawn, "token_shares": shares,
            "planned_shares": planned, "final_loss": res.last.get("loss"), "bpb_start": res.bpb_start,
            "bpb_end": res.bpb_end, "params": n_params, "seq_len": s.seq_len, "how": how,
            "base_model": inp.base_model, "tokenizer": ws.ledger.rel(inp.tok_dir),
            "corpus": ws.ledger.rel(inp.corpus), "replay": s.replay_source or s.replay_path,
            "stopped": res.stopped, "world_size": world, "distributed": acc.distributed_type.value,
            "compile": spec.compile or "off", "step0": step0 or None,
            "last": res.last}
    art = session.record_model(ws, sess, final, inp.hashes, meta)
    return TrainSummary(final, inp.role, res.steps, sampler.tokens_drawn, res.last.get("loss"), res.bpb_start,
                        res.bpb_end, shares, res.resumed_from, res.stopped, n_params, art)


def _record_once(ws: Workspace, kind: str, path: Path, inputs: list[str], meta: dict) -> None:
    """Record an artifact unless the newest record of that path already has its content."""
    rec = artifact_at(ws, path)
    if rec is None or rec["sha256"] != tree_sha256(path) or rec["kind"] != kind:
        ws.ledger.record_artifact(stage="train", kind=kind, path=path, inputs=inputs, meta=meta)
