"""The layers, read from the code: every `import` and `from ... import` of every module (those inside
functions and under `if TYPE_CHECKING:` too, and `importlib.import_module("soberan....")` with a
literal name), checked against the rules of docs/design.md ("Layers"):

- core (every module that is neither a stage nor orchestration: config, ledger, lang, documents,
  workspace, benchmarks, hf, offline, charts, ...) imports no stage and no orchestration;
- a stage imports no other stage and no orchestration (its own package is fine);
- orchestration (`build`, `cli`) may import anything.

A new module is core unless it sits in a stage's package, so the rules hold for it from its first
line. Each exception below is listed with why; an exception that no import needs any more fails
too, so the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import soberan
from soberan import stages

# The stages as the registry lists them; build and cli orchestrate.
ORCHESTRATION = frozenset({"build", "cli"})
STAGES = frozenset(s.package.split(".")[1] for s in stages.STAGES) - ORCHESTRATION

# Settings schemas: `soberan/<stage>/config.py` holds the pydantic model of the stage's config
# section; core reads these leaf modules (they import no stage, see test_settings_schemas_are_leaves).
# `soberan.config` reads them too, through the registry (`stages.load`), not by an import.
SCHEMA_READERS = {
    "soberan.benchmarks": "validates benchmark specs with evaluate's BenchmarkSpec, the [[evaluate.benchmarks]] schema",
}

ROOT = Path(soberan.__file__).parent


def module_name(path: Path) -> str:
    parts = ("soberan", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


PATHS = sorted(ROOT.rglob("*.py"))
MODULE_NAMES = {module_name(p) for p in PATHS}


def _called(call: ast.Call) -> str | None:
    return getattr(call.func, "attr", getattr(call.func, "id", None))


def imported(path: Path) -> set[str]:
    """Every soberan module `path` imports, by full name."""
    is_pkg = path.name == "__init__.py"
    here = module_name(path).split(".")
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package this module is in
                base = here[: len(here) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            # `from soberan import hf`, `from soberan.tokenizer import corpus`: modules, too
            out.update(f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in MODULE_NAMES)
        elif isinstance(node, ast.Call) and _called(node) == "import_module" and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            out.add(node.args[0].value)
    return {m for m in out if m == "soberan" or m.startswith("soberan.")}


def top(module: str) -> str:
    """The first name under soberan: the stage, `build`, `cli`, or a core module or package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer(module: str) -> str:
    t = top(module)
    return "orchestration" if t in ORCHESTRATION else "stage" if t in STAGES else "core"


def is_schema(module: str) -> bool:
    parts = module.split(".")
    return len(parts) == 3 and parts[1] in STAGES and parts[2] == "config"


MODULES = {module_name(p): p for p in PATHS}
IMPORTS = {m: imported(p) for m, p in MODULES.items()}


def crossings() -> dict[tuple[str, str], str]:
    """(importing module, imported top name) -> why it breaks a rule, for every import that does."""
    out = {}
    for mod, targets in IMPORTS.items():
        for t in sorted(targets):
            src, dst = layer(mod), layer(t)
            if src == "orchestration" or dst == "core":
                continue
            if src == "stage" and top(t) == top(mod):
                continue  # within its own stage
            if src == "core" and is_schema(t) and mod in SCHEMA_READERS:
                continue
            out.setdefault((mod, top(t)), f"{mod} ({src}) imports {t} ({dst})")
    return out


def test_core_imports_no_stage_and_a_stage_no_other_stage():
    found = crossings()
    new = sorted(found.values())
    assert not new, ("imports across layers (move the shared piece down into core; see docs/design.md, "
                     "Layers):\n  " + "\n  ".join(new))


def test_every_listed_exception_is_still_needed():
    for reader in SCHEMA_READERS:
        assert any(is_schema(t) for t in IMPORTS[reader]), f"{reader} reads no settings schema any more"


def test_settings_schemas_are_leaves():
    """What core may read of a stage, its settings model, imports nothing but core (lazily, for
    validators), so reading it pulls no stage code in."""
    for mod, targets in IMPORTS.items():
        if is_schema(mod):
            assert all(layer(t) == "core" for t in targets), (mod, sorted(targets))


def test_every_stage_package_is_classified():
    """A package with its own command is a stage or orchestration, never core by default."""
    with_cli = {p.parent.name for p in ROOT.glob("*/cli.py")}
    assert with_cli <= STAGES | ORCHESTRATION, with_cli - STAGES - ORCHESTRATION


def test_the_reader_sees_every_kind_of_import(monkeypatch):
    """The test would pass vacuously if `imported` missed a form: check it on the forms in use."""
    assert "soberan.hf" in IMPORTS["soberan.tokenizer"]  # `from soberan import hf as formats`, in a function
    assert "soberan.tokenizer.corpus" in IMPORTS["soberan.tokenizer"]  # from a package, a submodule
    assert "soberan.workspace" in IMPORTS["soberan.curate"]  # under `if TYPE_CHECKING:`
    assert "soberan.common" in IMPORTS["soberan.config"]  # module level
    # a planted crossing is found, both ways a rule can break
    monkeypatch.setitem(IMPORTS, "soberan.curate.planted", {"soberan.train.loop"})
    monkeypatch.setitem(IMPORTS, "soberan.ledger", {*IMPORTS["soberan.ledger"], "soberan.report"})
    found = crossings()
    assert ("soberan.curate.planted", "train") in found and ("soberan.ledger", "report") in found
