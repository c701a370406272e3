"""The stage registry: the one list of soberan's stages, in build order.

Everything that used to keep its own copy of the stage list derives from `STAGES`: the CLI's
subcommands (`soberan.cli`), the workspace folders (`soberan.workspace`), the order `soberan
build` runs them in and what marks each as done (`soberan.build`), the config sections of
`soberan.toml` (`soberan.config` assembles the `Config` model from each stage's settings model)
and the build fakes of the tests. Adding a stage is one `Stage` entry here plus its package.

Packages and models are named by dotted path, not imported: this is a core module, and importing
a stage from here would make every core module that reads the registry depend on every stage.
`load` imports what an entry names, when a caller needs it.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Command:
    """One CLI subcommand: `soberan <name>` is the typer app or function at `target`
    ("module:attribute")."""

    name: str
    target: str


@dataclass(frozen=True)
class Stage:
    name: str  # the subcommand, the ledger's stage name and the config section of its settings
    package: str  # the stage's package; `build` calls its `run(ws)`
    folder: str | None = None  # the workspace folder it writes (None: no folder of its own)
    # The config sections hashed into each artifact it records: what `soberan build` compares
    # to decide whether the stage must run again. The stage's own code reads them from here.
    config_sections: tuple[str, ...] = ()
    # "module:function(ws) -> str" for a stage whose config hash covers more than its sections
    # (files the config names, read by content), and how a rebuild's reason names that more.
    config_hash: str | None = None
    config_also: str = ""
    main_artifact: str | None = None  # the artifact kind that marks the stage as done
    upstream: tuple[str, ...] = ()  # stages whose main artifact it is made from
    built: bool = False  # `soberan build` runs it
    incremental: bool = False  # a rerun redoes only what changed instead of starting clean
    settings: str | None = None  # "module:Model": the pydantic model of its `[name]` section
    commands: tuple[Command, ...] = ()


STAGES: tuple[Stage, ...] = (
    Stage("collect", "soberan.collect", "raw",
          config_sections=("collect", "sources", "policy"),  # sources and policy decide what is read
          main_artifact="corpus", built=True,
          # Collect recollects a source whose files or settings changed and drops a source
          # removed from the config, keeping the rest.
          incremental=True,
          settings="soberan.collect.config:CollectSettings",
          commands=(Command("collect", "soberan.collect.cli:collect"),)),
    Stage("curate", "soberan.curate", "curated",
          # The project's languages choose the packs. Decontamination also reads benchmark
          # texts: its hash covers the texts themselves, not the rest of [evaluate].
          config_sections=("curate", "project"),
          config_hash="soberan.curate:config_hash",
          config_also="the benchmark texts [curate.decontam] names",
          main_artifact="corpus", upstream=("collect",), built=True,
          settings="soberan.curate.config:CurateSettings",
          commands=(Command("curate", "soberan.curate.cli:curate"),
                    Command("calibrate", "soberan.curate.cli:calibrate"))),
    Stage("tokenizer", "soberan.tokenizer", "tokenizer",
          config_sections=("tokenizer", "heldout"),
          main_artifact="tokenizer", upstream=("curate",), built=True,
          settings="soberan.tokenizer.config:TokenizerSettings",
          commands=(Command("tokenizer", "soberan.tokenizer.cli:app"),)),
    Stage("train", "soberan.train", "model",
          config_sections=("train", "heldout"),
          # train reads both the curated corpus and the tokenizer
          main_artifact="model", upstream=("curate", "tokenizer"), built=True,
          settings="soberan.train.config:TrainSettings",
          commands=(Command("train", "soberan.train.cli:train"),)),
    Stage("evaluate", "soberan.evaluate", "eval",
          config_sections=("evaluate",),
          main_artifact="results", upstream=("train",), built=True,
          settings="soberan.evaluate.config:EvaluateSettings",
          commands=(Command("evaluate", "soberan.evaluate.cli:evaluate"),)),
    Stage("serve", "soberan.serve", "serve",
          settings="soberan.serve.config:ServeSettings",
          commands=(Command("serve", "soberan.serve.cli:serve"),
                    Command("keys", "soberan.serve.cli:keys_app"),
                    Command("audit", "soberan.serve.cli:audit_app"))),
    Stage("report", "soberan.report", "report",
          commands=(Command("report", "soberan.report.cli:report"),
                    Command("takedown", "soberan.report.cli:takedown"))),
    # The orchestrator: no folder or artifact of its own, it runs the `built` stages above.
    Stage("build", "soberan.build",
          commands=(Command("build", "soberan.build.cli:build"),)),
)


def get(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(f"no stage {name!r}; stages are {', '.join(s.name for s in STAGES)}")


def build_order() -> tuple[str, ...]:
    """The stages `soberan build` runs, in order."""
    return tuple(s.name for s in STAGES if s.built)


def folders() -> dict[str, str]:
    """Stage -> its workspace folder, for the stages that have one."""
    return {s.name: s.folder for s in STAGES if s.folder}


def main_artifacts() -> dict[str, str]:
    """Stage -> the artifact kind that marks it as done."""
    return {s.name: s.main_artifact for s in STAGES if s.main_artifact}


def load(target: str):
    """Import what a dotted "module:attribute" names."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def package_file(stage: Stage, *parts: str) -> Path | None:
    """A file shipped inside a stage's package (its `template.toml`), found without importing
    the package; None when the package is not installed."""
    spec = importlib.util.find_spec(stage.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)


def check() -> list[str]:
    """What is inconsistent in the registry, phrased for a person: empty when it is sound. Run by
    the tests, as litgpt checks its command table."""
    problems: list[str] = []
    seen: set[str] = set()
    for s in STAGES:
        if s.name in seen:
            problems.append(f"stage {s.name!r} is listed twice")
        for up in s.upstream:
            if up not in seen:
                problems.append(f"{s.name}: upstream {up!r} is not a stage listed before it")
            elif not get(up).built:
                problems.append(f"{s.name}: upstream {up!r} is not built")
        seen.add(s.name)
        if s.built and not (s.folder and s.main_artifact):
            problems.append(f"{s.name}: a built stage needs a folder and a main artifact")
        if s.settings and s.name not in s.config_sections and s.built:
            problems.append(f"{s.name}: its own section [{s.name}] is not in its config sections")
    cmds = [c.name for s in STAGES for c in s.commands]
    problems += [f"command {c!r} is registered twice" for c in sorted({c for c in cmds if cmds.count(c) > 1})]
    dirs = [s.folder for s in STAGES if s.folder]
    problems += [f"folder {d!r} belongs to two stages" for d in sorted({d for d in dirs if dirs.count(d) > 1})]
    return problems
