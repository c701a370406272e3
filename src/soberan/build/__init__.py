"""`soberan build`: run collect → curate → tokenizer → train → evaluate, skipping what is current.

A stage is current when its last recorded artifact still verifies (its content hash matches the
files), was made from the upstream artifacts that are current now (same paths, same content
hashes), under the config section it would use now, from the same source files (collect), and no
take-down marked it stale. Anything else reruns, and a rerun that changes its output makes every
stage downstream rerun too, because their recorded inputs no longer match. Content hashes, not
record ids, decide: a stage that reruns and writes the same bytes leaves downstream alone.

A stage rebuilt because it is stale, changed or corrupt starts from an empty folder: its previous
artifacts are retired in the ledger, its folder deleted and its decision log archived, so nothing
of an old config or a taken-down document survives into the new artifact. A build killed midway
resumes: the `build` start event names what the interrupted run was making, and a rerun with the
same config and inputs keeps the stage's partial work, which the stage itself resumes from.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from soberan.offline import OFFLINE_ENV, airgap
from soberan.workspace import STAGE_ORDER, Workspace

# The artifact that marks a stage as done, and the upstream stages whose main artifact it must be
# made from (train reads both the curated corpus and the tokenizer).
MAIN_ARTIFACT = {"collect": "corpus", "curate": "corpus", "tokenizer": "tokenizer",
                 "train": "model", "evaluate": "results"}
UPSTREAM = {"collect": (), "curate": ("collect",), "tokenizer": ("curate",),
            "train": ("curate", "tokenizer"), "evaluate": ("train",)}
# Collect is incremental by design: it recollects a source whose files or settings changed and
# drops a source removed from the config, keeping the rest. Every other stage starts from an
# empty folder when what it was made from changed, so no old output leaks into the new one.
INCREMENTAL = {"collect"}


OFFLINE_ENV_KEYS = tuple(OFFLINE_ENV)


class BuildError(Exception):
    """A build cannot go on; the message says which stage and why."""


@dataclass
class StageStatus:
    stage: str
    current: bool
    reasons: list[str]  # why it must run; empty when current
    artifact: dict | None  # the main artifact record, if any
    key: dict  # what a run now would be made from (config hash, input hashes, source files)
    rebuild: bool = False  # start from an empty folder (stale, changed or corrupt output)


@dataclass
class StageResult:
    stage: str
    action: str  # skipped | ran | resumed | rebuilt
    reason: str
    seconds: float = 0.0
    artifact: str | None = None  # hash of the artifact record it ends with
    summary: object = None  # what the stage's run() returned


@dataclass
class BuildSummary:
    stages: list[StageResult] = field(default_factory=list)

    @property
    def ran(self) -> list[str]:
        return [s.stage for s in self.stages if s.action != "skipped"]


# --- what a stage would be made from ----------------------------------------------------------

def stage_module(stage: str):
    return importlib.import_module(f"soberan.{stage}")


def stage_config_hash(ws: Workspace, stage: str) -> str:
    """The config hash a stage records with its artifact: its own `config_hash(ws)` where it has
    one (curate's adds the benchmark texts it decontaminates against), else the hash of the
    config sections it declares (`soberan.<stage>.CONFIG_SECTIONS`)."""
    mod = stage_module(stage)
    own = getattr(mod, "config_hash", None)
    return own(ws) if own is not None else ws.config.section_hash(*mod.CONFIG_SECTIONS)


def source_fingerprints(ws: Workspace) -> dict[str, str]:
    """Per source, collect's own fingerprint of it (its settings, the policy, and its input
    files' paths, sizes and mtimes), so a file added to a source folder or changed in place makes
    collect run though soberan.toml did not change. A crawl's fingerprint covers its seeds and
    settings; what a site serves today is not knowable without fetching it (`--only collect`)."""
    from soberan.collect.stage import plan_source

    return {s.name: plan_source(ws.config, s).fingerprint for s in ws.config.sources}


def _collected_fingerprints(ws: Workspace) -> dict[str, str | None]:
    """What collect's resume state says each source was last collected from (None: unfinished)."""
    from soberan.collect.shards import load_state

    raw = ws.stage_dir("collect")
    out = {}
    for s in ws.config.sources:
        st = load_state(raw, s.name)
        out[s.name] = st.fingerprint if st is not None and st.complete else None
    return out


def _current_main(ws: Workspace, stage: str) -> dict | None:
    # The build's train stage makes the "main" model; baselines and chat fine-tunes beside it
    # are made by hand and must not count as its output.
    return ws.ledger.latest_artifact(stage, MAIN_ARTIFACT[stage], role="main" if stage == "train" else None)


def stage_key(ws: Workspace, stage: str) -> dict:
    key: dict = {"config": stage_config_hash(ws, stage), "inputs": {}}
    for up in UPSTREAM[stage]:
        art = _current_main(ws, up)
        key["inputs"][up] = {"path": art["path"], "sha256": art["sha256"]} if art else None
    if stage == "collect":
        key["sources"] = source_fingerprints(ws)
    return key


def _build_events(ws: Workspace, stage: str) -> list[dict]:
    return [e for e in ws.ledger.records("event") if e.get("event") == "build" and e.get("stage") == stage]


def stage_status(ws: Workspace, stage: str) -> StageStatus:
    """Is `stage` current? If not, every reason why, phrased for a person."""
    from soberan.takedown import stale_marks

    led = ws.ledger
    key = stage_key(ws, stage)
    art = _current_main(ws, stage)
    missing_up = [up for up, v in key["inputs"].items() if v is None]
    if art is None:
        why = "no artifact yet" + (f" (and no {', '.join(missing_up)} artifact to build from)"
                                   if missing_up else "")
        return StageStatus(stage, False, [why], None, key)
    reasons: list[str] = []
    rebuild = False
    for path, mark in stale_marks(ws).items():
        if mark.get("stage") == stage:
            reasons.append(f"stale: {path} ({mark.get('reason', 'marked stale')})")
            rebuild = True
    for a in led.artifacts():
        if a["stage"] != stage:
            continue
        full = ws.root / a["path"]
        if not full.exists():
            reasons.append(f"{a['path']} was removed")
            rebuild = True
        elif not ws.unchanged(full, a["sha256"]):
            reasons.append(f"{a['path']} was changed since it was recorded")
            rebuild = True
    if art.get("config_hash") != key["config"]:
        mod = stage_module(stage)
        also = f" or {mod.CONFIG_ALSO}" if hasattr(mod, "CONFIG_ALSO") else ""
        reasons.append(f"config changed ([{'], ['.join(mod.CONFIG_SECTIONS)}]{also})")
    by_hash = {r["hash"]: r for r in led.records("artifact")}
    used = [by_hash[h] for h in art.get("inputs", []) if h in by_hash]
    used_now = {}
    for u in used:
        now_ = next((c for c in led.artifacts(u["stage"], u["kind"]) if c["path"] == u["path"]), None)
        used_now[u["path"]] = (u, now_)
        if now_ is None:
            reasons.append(f"input {u['path']} ({u['stage']}/{u['kind']}) is gone")
        elif now_["sha256"] != u["sha256"]:
            reasons.append(f"input {u['path']} ({u['stage']}/{u['kind']}) changed")
    for up, v in key["inputs"].items():
        if v is not None and v["path"] not in used_now:
            reasons.append(f"not made from the current {up} artifact {v['path']}")
    if stage == "collect":
        from soberan.takedown import load_rules

        gone = load_rules(ws).sources
        have = _collected_fingerprints(ws)
        changed = sorted(n for n, fp in key["sources"].items() if n not in gone and have.get(n) != fp)
        if changed:
            reasons.append(f"source files or settings changed: {', '.join(changed)}")
    # Stale or damaged output always starts clean. Any other change means the old output
    # describes other data: start clean too, except collect, which redoes only what changed.
    rebuild = rebuild or (bool(reasons) and stage not in INCREMENTAL)
    return StageStatus(stage, not reasons, reasons, art, key, rebuild=rebuild)


# --- doing it -----------------------------------------------------------------------------------

def clean_stage(ws: Workspace, stage: str, reason: str) -> None:
    """Empty a stage before a rebuild: retire its artifacts in the ledger (so `ledger verify`
    knows their files went on purpose), delete its folder (checkpoints included) and move its
    decision log to ledger/archive/, so the report counts the rebuilt run only."""
    led = ws.ledger
    folder = ws.stage_dir(stage)
    rel = led.rel(folder)
    for a in led.artifacts():
        if a["stage"] == stage or a["path"] == rel or a["path"].startswith(rel + "/"):
            led.retire(a["path"], reason)
    if folder.exists():
        shutil.rmtree(folder)
    # A stage's scratch space (curate keeps its passes in work/curate/) holds documents too.
    shutil.rmtree(ws.root / "work" / stage, ignore_errors=True)
    dec = led.decisions_dir / stage
    moved = None
    if dec.exists():
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        target = led.dir / "archive" / "decisions" / f"{stage}-{stamp}"
        target.parent.mkdir(parents=True, exist_ok=True)
        led.retire(dec, reason)  # out of the chain's check: archived, not tampered with
        shutil.move(dec, target)
        moved = led.rel(target)
    led.record_event("clean", stage=stage, folder=rel, reason=reason, archived_decisions=moved)


def _unfinished(ws: Workspace, stage: str, status: StageStatus) -> dict | None:
    """The start event of this stage's last run if it never finished (a killed build)."""
    after = status.artifact["seq"] if status.artifact else -1
    starts = [e for e in _build_events(ws, stage) if e.get("phase") == "start" and e["seq"] > after]
    return starts[-1] if starts else None


def run(ws: Workspace, *, from_stage: str | None = None, only: str | None = None,
        fresh: bool = False, dry_run: bool = False,
        on_stage: Callable[[StageResult], None] | None = None,
        on_start: Callable[[StageResult], None] | None = None,
        runner: Callable[[Workspace, str], object] | None = None) -> BuildSummary:
    """Build the workspace. `from_stage` forces that stage and all after it (the stages before it
    are left as they are); `only` runs one stage and nothing else; `fresh` empties each stage that
    runs before running it. `runner` calls a stage (default: `soberan.<stage>.run(ws)`);
    `on_start` and `on_stage` are told when a stage starts and ends."""
    airgap()
    for name, val in (("--from", from_stage), ("--only", only)):
        if val is not None and val not in STAGE_ORDER:
            raise BuildError(f"{name} {val!r}: not a stage; stages are {', '.join(STAGE_ORDER)}")
    if from_stage and only:
        raise BuildError("use --from or --only, not both")
    stages = [only] if only else list(STAGE_ORDER[STAGE_ORDER.index(from_stage):] if from_stage
                                      else STAGE_ORDER)
    forced = set(stages) if (only or from_stage) else set()
    runner = runner or (lambda w, s: stage_module(s).run(w))
    summary = BuildSummary()
    would_run: set[str] = set()  # for a dry run: stages that would run before this one
    for stage in stages:
        status = stage_status(ws, stage)
        if dry_run and status.current and would_run & set(UPSTREAM[stage]):
            status.current = False
            status.reasons = [f"upstream {', '.join(sorted(would_run & set(UPSTREAM[stage])))} runs first"]
        if status.current and stage not in forced:
            res = StageResult(stage, "skipped", "current", artifact=status.artifact["hash"])
        else:
            would_run.add(stage)
            reason = "; ".join(status.reasons) if status.reasons else \
                f"forced ({'--only' if only else '--from'})"
            # A killed run resumes when it was making the same thing; its partial work from
            # another config or other inputs is thrown away.
            unfinished = _unfinished(ws, stage, status)
            resume = unfinished is not None and unfinished.get("key") == status.key
            clean = (fresh or status.rebuild or unfinished is not None) and not resume
            if unfinished is not None and not resume:
                reason += "; the interrupted run was for another config or other inputs"
            action = "resumed" if resume else ("rebuilt" if clean else "ran")
            res = StageResult(stage, action, reason)
            if not dry_run:
                if on_start:
                    on_start(res)
                if clean:
                    ws.ledger.record_event("build", stage=stage, phase="clean", reason=reason)
                    clean_stage(ws, stage, f"rebuild: {reason}")
                ws.ledger.record_event("build", stage=stage, phase="start", key=status.key,
                                       action=action, reason=reason)
                t0 = time.perf_counter()
                try:
                    res.summary = runner(ws, stage)
                except BaseException as e:
                    # Recorded so the report's build history shows where a build stopped; the
                    # next build resumes from the start event above.
                    ws.ledger.record_event("build", stage=stage, phase="failed", action=action,
                                           reason=f"{type(e).__name__}: {e}"[:500],
                                           seconds=round(time.perf_counter() - t0, 3))
                    raise
                res.seconds = time.perf_counter() - t0
                art = _current_main(ws, stage)
                if art is None or (not status.current and status.artifact is not None
                                   and art["seq"] <= status.artifact["seq"]):
                    # Without a new record the next build would find the same reasons again.
                    raise BuildError(f"stage {stage} finished without recording a new "
                                     f"{MAIN_ARTIFACT[stage]} artifact")
                res.artifact = art["hash"]
                ws.ledger.record_event("build", stage=stage, phase="done", key=status.key,
                                       artifact=art["hash"], seconds=round(res.seconds, 3))
        summary.stages.append(res)
        if on_stage:
            on_stage(res)
    return summary


def summary_json(summary: BuildSummary) -> str:
    return json.dumps([{k: v for k, v in s.__dict__.items() if k != "summary"} for s in summary.stages],
                      indent=2)
