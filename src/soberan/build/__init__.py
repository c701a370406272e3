"""`soberan build`: run collect → curate → tokenizer → train → evaluate, skipping what is current.

The stages, their order and what each is made from come from the stage registry
(`soberan.stages`); whether a stage is current is decided by `soberan.freshness`, the same check
curate and tokenizer make when run on their own. A stage is current when its last recorded
artifact still verifies (its content hash matches the files), was made from the upstream
artifacts that are current now (same paths, same content hashes), under the config sections it
would use now, from the same source files (collect), and no take-down marked it stale. Anything else reruns, and a rerun that changes its output makes every
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

from soberan import stages
from soberan.offline import OFFLINE_ENV, airgap
from soberan.freshness import current_main, freshness, stage_config_hash
from soberan.workspace import Workspace

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
    return importlib.import_module(stages.get(stage).package)


def stage_key(ws: Workspace, stage: str, fingerprints: dict | None = None) -> dict:
    """What a run now would be made from: the config hash, the upstream artifacts (path and
    content hash) and, for collect, each source's fingerprint (`soberan.collect.source_fingerprints`)."""
    key: dict = {"config": stage_config_hash(ws, stage), "inputs": {}}
    for up in stages.get(stage).upstream:
        art = current_main(ws, up)
        key["inputs"][up] = {"path": art["path"], "sha256": art["sha256"]} if art else None
    if fingerprints is not None:
        key["sources"] = {name: fp.now for name, fp in fingerprints.items()}
    return key


def _build_events(ws: Workspace, stage: str) -> list[dict]:
    return [e for e in ws.ledger.records("event") if e.get("event") == "build" and e.get("stage") == stage]


def stage_status(ws: Workspace, stage: str) -> StageStatus:
    """Is `stage` current (`soberan.freshness` decides)? If not, every reason why, phrased for a
    person. Collect also runs when a source's files or settings changed, though soberan.toml
    did not; a source taken down whole is not collected again, so its change does not count."""
    fingerprints = None
    if stage == "collect":
        from soberan.collect import source_fingerprints

        fingerprints = source_fingerprints(ws)
    key = stage_key(ws, stage, fingerprints)
    f = freshness(ws, stage, config_hash=key["config"])
    if f.artifact is not None and fingerprints is not None:
        from soberan.takedown import load_rules

        gone = load_rules(ws).sources
        changed = sorted(n for n, fp in fingerprints.items() if n not in gone and fp.changed)
        if changed:
            f.reasons.append(f"source files or settings changed: {', '.join(changed)}")
    # Stale or damaged output always starts clean. Any other change means the old output
    # describes other data: start clean too, except an incremental stage (collect), which redoes
    # only what changed. A first run has nothing to clean.
    rebuild = f.artifact is not None and (f.rebuild or (bool(f.reasons) and not stages.get(stage).incremental))
    return StageStatus(stage, f.current, f.reasons, f.artifact, key, rebuild=rebuild)


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
    order = stages.build_order()
    for name, val in (("--from", from_stage), ("--only", only)):
        if val is not None and val not in order:
            raise BuildError(f"{name} {val!r}: not a stage; stages are {', '.join(order)}")
    if from_stage and only:
        raise BuildError("use --from or --only, not both")
    todo = [only] if only else list(order[order.index(from_stage):] if from_stage else order)
    forced = set(todo) if (only or from_stage) else set()
    runner = runner or (lambda w, s: stage_module(s).run(w))
    summary = BuildSummary()
    would_run: set[str] = set()  # for a dry run: stages that would run before this one
    for stage in todo:
        status = stage_status(ws, stage)
        up = set(stages.get(stage).upstream)
        if dry_run and status.current and would_run & up:
            status.current = False
            status.reasons = [f"upstream {', '.join(sorted(would_run & up))} runs first"]
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
                art = current_main(ws, stage)
                if art is None or (not status.current and status.artifact is not None
                                   and art["seq"] <= status.artifact["seq"]):
                    # Without a new record the next build would find the same reasons again.
                    raise BuildError(f"stage {stage} finished without recording a new "
                                     f"{stages.get(stage).main_artifact} artifact")
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
