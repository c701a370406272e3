"""Is a stage's output up to date? Decided here, once, for `soberan build` and for the stages that
skip their own work when nothing changed (curate, tokenizer).

A stage's output is current when its main artifact (the registry's `main_artifact`) exists; every
artifact the stage recorded still hashes as recorded; it was made under the config hash a run now
would use; it was made from the upstream artifacts that are current now, compared by path and
content hash, not by record id, so an upstream rerun that writes the same bytes leaves it alone;
whatever else the caller says a run depends on (`meta`: the tokenizer's base files) is unchanged;
and no take-down marked it stale. Each reason it is not is phrased for a person ("config changed
([curate], [project])"), and `soberan build` prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from soberan import stages

if TYPE_CHECKING:
    from soberan.workspace import Workspace


@dataclass
class Freshness:
    stage: str
    artifact: dict | None  # the stage's current main artifact, if any
    reasons: list[str] = field(default_factory=list)  # why it must run; empty when current
    rebuild: bool = False  # its output is stale or damaged: a rerun must start from an empty folder

    @property
    def current(self) -> bool:
        return not self.reasons


def current_main(ws: Workspace, stage: str) -> dict | None:
    """The stage's current main artifact. The build's train stage makes the "main" model;
    baselines and chat fine-tunes beside it are made by hand and do not count as its output."""
    return ws.ledger.latest_artifact(stage, stages.get(stage).main_artifact,
                                     role="main" if stage == "train" else None)


def stage_config_hash(ws: Workspace, stage: str) -> str:
    """The config hash the stage records with its artifacts: its registry `config_hash` function
    where it names one, else the hash of the config sections the registry lists for it."""
    st = stages.get(stage)
    return stages.load(st.config_hash)(ws) if st.config_hash else ws.config.section_hash(*st.config_sections)


def upstream_now(ws: Workspace, stage: str) -> dict[str, dict | None]:
    """Upstream stage -> its current main artifact (None: none yet): what a run now reads."""
    return {up: current_main(ws, up) for up in stages.get(stage).upstream}


def freshness(ws: Workspace, stage: str, *, config_hash: str | None = None,
              inputs: dict[str, dict | None] | None = None, meta: dict | None = None,
              takedowns: bool = True) -> Freshness:
    """Is `stage`'s output current? If not, every reason why.

    `config_hash` is what a run now would record (default: the hash of the stage's registry
    sections; the tokenizer's command-line overrides change it); `inputs` the upstream artifacts
    it would read (default `upstream_now`); `meta` values the main artifact's meta must repeat.
    `takedowns=False` leaves take-down marks out: a stage run on its own (`soberan curate`) would
    rerun in place and record the same documents again, clearing the mark; only the build, which
    empties the folder first, acts on them."""
    led = ws.ledger
    inputs = upstream_now(ws, stage) if inputs is None else inputs
    config_hash = stage_config_hash(ws, stage) if config_hash is None else config_hash
    art = current_main(ws, stage)
    missing = [up for up, v in inputs.items() if v is None]
    if art is None:
        why = "no artifact yet" + (f" (and no {', '.join(missing)} artifact to build from)" if missing else "")
        return Freshness(stage, None, [why])
    reasons: list[str] = []
    rebuild = False
    if takedowns:
        from soberan.takedown import stale_marks

        for path, mark in stale_marks(ws).items():
            if mark.get("stage") == stage:
                reasons.append(f"stale: {path} ({mark.get('reason', 'marked stale')})")
                rebuild = True
    for a in led.artifacts(stage):
        full = ws.root / a["path"]
        if not full.exists():
            reasons.append(f"{a['path']} was removed")
            rebuild = True
        elif not ws.unchanged(full, a["sha256"]):
            reasons.append(f"{a['path']} was changed since it was recorded")
            rebuild = True
    if art.get("config_hash") != config_hash:
        st = stages.get(stage)
        also = f" or {st.config_also}" if st.config_also else ""
        reasons.append(f"config changed ([{'], ['.join(st.config_sections)}]{also})")
    by_hash = {r["hash"]: r for r in led.records("artifact")}
    used = {}
    for u in (by_hash[h] for h in art.get("inputs", []) if h in by_hash):
        now = next((c for c in led.artifacts(u["stage"], u["kind"]) if c["path"] == u["path"]), None)
        used[u["path"]] = u
        if now is None:
            reasons.append(f"input {u['path']} ({u['stage']}/{u['kind']}) is gone")
        elif now["sha256"] != u["sha256"]:
            reasons.append(f"input {u['path']} ({u['stage']}/{u['kind']}) changed")
    for up, v in inputs.items():
        if v is not None and v["path"] not in used:
            reasons.append(f"not made from the current {up} artifact {v['path']}")
    for k, v in (meta or {}).items():
        if (art.get("meta") or {}).get(k) != v:
            reasons.append(f"{k} changed since it was made")
    return Freshness(stage, art, reasons, rebuild)
