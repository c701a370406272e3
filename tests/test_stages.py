"""The stage registry (`soberan.stages`) is the one list of stages: the CLI, the workspace folders,
the build order and the config sections all follow it, and adding a stage is one entry plus its
package."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from test_build_fakes import fake_runner, make_fake_workspace, offline_env  # noqa: F401 (autouse)
from typer.testing import CliRunner

from soberan import stages
from soberan.config import ConfigError, load_config


def test_the_registry_is_sound_and_everything_follows_it():
    import soberan.cli as cli
    from soberan.config import Config
    from soberan.workspace import Workspace

    assert stages.check() == []
    assert stages.build_order() == ("collect", "curate", "tokenizer", "train", "evaluate")
    sections = list(Config.model_fields)
    assert sections == ["project", "policy", "sources", "heldout"] + [s.name for s in stages.STAGES if s.settings]
    names = {c.name for c in cli.app.registered_commands} | {g.name for g in cli.app.registered_groups}
    for s in stages.STAGES:
        assert {c.name for c in s.commands} <= names
        for c in s.commands:
            assert isinstance(stages.load(c.target), typer.Typer) or callable(stages.load(c.target))
        if s.built:
            mod = importlib.import_module(s.package)
            assert callable(mod.run)
            # A stage module still names its sections, read from the registry, not kept apart.
            assert mod.CONFIG_SECTIONS == s.config_sections
            assert set(s.config_sections) <= set(sections) | {"sources"}
        if s.settings:
            assert stages.package_file(s, "template.toml").exists(), f"{s.name} has no template.toml"
    assert Workspace(Path("/w")).stage_dir("train") == Path("/w/model")


def test_check_names_what_is_inconsistent(monkeypatch):
    bad = (stages.Stage("a", "x.a", "same", main_artifact="k", built=True, upstream=("b",)),
           stages.Stage("b", "x.b", "same", commands=(stages.Command("a", "x:a"), stages.Command("a", "x:b"))))
    monkeypatch.setattr(stages, "STAGES", bad)
    problems = stages.check()
    assert "a: upstream 'b' is not a stage listed before it" in problems
    assert "command 'a' is registered twice" in problems
    assert "folder 'same' belongs to two stages" in problems
    with pytest.raises(KeyError, match="no stage 'c'"):
        stages.get("c")


# --- a new stage: one registry entry and its package, nothing else --------------------------------

TOY = {
    "__init__.py": '''
        from soberan import stages

        CONFIG_SECTIONS = stages.get("toy").config_sections


        def _greeting_file(ws):
            p = ws.config.resolve(ws.config.toy.greeting_file)
            return p.read_text() if p.exists() else None


        def config_hash(ws):
            """[toy] and the greeting file it names, by content."""
            import hashlib

            body = ws.config.section_hash(*CONFIG_SECTIONS) + repr(_greeting_file(ws))
            return hashlib.sha256(body.encode()).hexdigest()


        def run(ws):
            """Count the evaluated models into toy/count.txt."""
            import json

            res = ws.ledger.latest_artifact("evaluate", "results")
            n = len(json.loads((ws.root / res["path"]).read_text())["models"])
            out = ws.stage_dir("toy")
            out.mkdir(parents=True, exist_ok=True)
            (out / "count.txt").write_text(f"{_greeting_file(ws) or ws.config.toy.greeting} {n}\\n")
            return ws.ledger.record_artifact(stage="toy", kind="count", path=out / "count.txt",
                                             inputs=[res["hash"]], config_hash=config_hash(ws))
    ''',
    "config.py": '''
        from pydantic import BaseModel, ConfigDict


        class ToySettings(BaseModel):
            model_config = ConfigDict(extra="forbid")
            greeting: str = "models:"
            greeting_file: str = "greeting.txt"  # wins over `greeting` when it exists
    ''',
    "template.toml": '''
        [toy]
        # greeting = "models:"   # the word before the count
    ''',
    "cli.py": '''
        from pathlib import Path

        import typer


        def toy(workspace: Path = typer.Option(Path("."), "--workspace", "-w")) -> None:
            """Count the evaluated models."""
            from soberan.workspace import Workspace
            from toystage import run

            print("toy:", run(Workspace.open(workspace))["path"])
    ''',
}


@pytest.fixture
def toy_registry(tmp_path, monkeypatch):
    """The registry with a `toy` stage after evaluate, its package on sys.path; restored after."""
    import soberan.cli

    pkg = tmp_path / "pkgs" / "toystage"
    pkg.mkdir(parents=True)
    for name, body in TOY.items():
        (pkg / name).write_text(textwrap.dedent(body).lstrip())
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    toy = stages.Stage("toy", "toystage", "toy", config_sections=("toy",), config_hash="toystage:config_hash",
                       config_also="the greeting file", main_artifact="count",
                       upstream=("evaluate",), built=True, settings="toystage.config:ToySettings",
                       commands=(stages.Command("toy", "toystage.cli:toy"),))
    monkeypatch.setattr(stages, "STAGES", stages.STAGES + (toy,))
    cli = importlib.reload(soberan.cli)  # the `soberan` app as it is built from this registry
    yield cli
    monkeypatch.undo()
    for mod in [m for m in sys.modules if m == "toystage" or m.startswith("toystage.")]:
        del sys.modules[mod]
    importlib.reload(soberan.cli)


def test_a_new_stage_gets_a_command_a_folder_a_config_section_and_a_place_in_the_build(toy_registry, tmp_path):
    from soberan.build import run

    ws = make_fake_workspace(tmp_path / "w")
    text = (ws.root / "soberan.toml").read_text()
    assert "\n[toy]\n" in text  # `soberan init` wrote its commented template
    assert load_config(ws.root).toy.greeting == "models:"

    def runner(w, stage):
        return importlib.import_module("toystage").run(w) if stage == "toy" else fake_runner(w, stage)

    first = run(ws, runner=runner)
    assert [r.stage for r in first.stages] == ["collect", "curate", "tokenizer", "train", "evaluate", "toy"]
    assert (ws.root / "toy" / "count.txt").read_text() == "models: 2\n"
    assert [r.action for r in run(ws, runner=runner).stages] == ["skipped"] * 6

    # Its own section is validated like every other, and a change in it reruns it alone.
    (ws.root / "soberan.toml").write_text(text.replace("[toy]\n", "[toy]\nnope = 1\n"))
    with pytest.raises(ConfigError, match="toy.nope: unknown key"):
        load_config(ws.root)
    (ws.root / "soberan.toml").write_text(text.replace("[toy]\n", '[toy]\ngreeting = "counted:"\n'))
    from soberan.workspace import Workspace

    ws = Workspace.open(ws.root)
    again = run(ws, runner=runner)
    assert [(r.stage, r.action, r.reason) for r in again.stages if r.action != "skipped"] == [
        ("toy", "rebuilt", "config changed ([toy] or the greeting file)")]
    (ws.root / "greeting.txt").write_text("evaluated:")  # what its config hash covers beside [toy]
    again = run(ws, runner=runner)
    assert [(r.stage, r.reason) for r in again.stages if r.action != "skipped"] == [
        ("toy", "config changed ([toy] or the greeting file)")]

    # And the CLI has its subcommand.
    res = CliRunner().invoke(toy_registry.app, ["toy", "-w", str(ws.root)])
    assert res.exit_code == 0, res.output
    assert "toy: toy/count.txt" in res.output
    assert (ws.root / "toy" / "count.txt").read_text() == "evaluated: 2\n"
