"""The templates `soberan init` writes and docs/config.md are generated from the settings models
(soberan.configdoc): each setting is described once, in the docstring under its field. These
tests fail when a checked-in file drifts from the models, when a key has no description, and when
the template, every key uncommented, would not load or would not show the model's defaults."""

from __future__ import annotations

import json
import tomllib
from string import Template
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from soberan import configdoc
from soberan.config import Config
from soberan.workspace import init_values


def test_checked_in_templates_and_reference_match_the_models():
    stale = configdoc.stale()
    assert not stale, (f"{', '.join(str(p) for p in stale)} differ from what the settings models "
                       f"generate; run `{configdoc.REGENERATE}` and commit the result")


def test_check_command_passes_on_this_tree(capsys):
    assert configdoc.main(["--check"]) == 0, capsys.readouterr().out


def _models(model: type[BaseModel], seen=None):
    seen = set() if seen is None else seen
    if model in seen:
        return
    seen.add(model)
    yield model
    for f in model.model_fields.values():
        sub = configdoc._model_of(f.annotation) or configdoc._list_model(f.annotation)
        if sub:
            yield from _models(sub, seen)


def test_every_key_and_table_is_described():
    missing = []
    for _, section in configdoc.sections():
        for model in _models(section):
            if not configdoc._intro(model):
                missing.append(f"{model.__name__} (class docstring)")
            for key, f in model.model_fields.items():
                if configdoc._model_of(f.annotation):
                    continue  # a sub-table: its class docstring describes it
                if not f.description:
                    missing.append(f"{model.__name__}.{key}")
    assert not missing, f"settings without a description (write a docstring under each): {missing}"


def _substituted(example, values):
    return json.loads(Template(json.dumps(example, ensure_ascii=False)).safe_substitute(values))


def test_every_example_is_a_valid_value():
    values = init_values("x", "th", "TH")
    for _, section in configdoc.sections():
        for model in _models(section):
            for key, f in model.model_fields.items():
                for ex in f.examples or []:
                    typ = Annotated[(f.annotation, *f.metadata)] if f.metadata else f.annotation
                    TypeAdapter(typ).validate_python(_substituted(ex, values))


def _shows_defaults(model: type[BaseModel], got: BaseModel, where: str) -> None:
    """Every key whose default the template shows holds that default (an unset default shows an
    example instead)."""
    for key, f in model.model_fields.items():
        sub = configdoc._model_of(f.annotation)
        if sub:
            _shows_defaults(sub, getattr(got, key), f"{where}.{key}")
        elif not f.is_required() and f.get_default(call_default_factory=True) is not None \
                and not (configdoc._list_model(f.annotation) and f.examples):
            assert getattr(got, key) == f.get_default(call_default_factory=True), f"{where}.{key}"


@pytest.mark.parametrize("lang,country", [("ko", "KR"), ("th", "TH"), ("ar", "SA")])
def test_template_with_every_key_uncommented_loads_and_shows_the_defaults(lang, country):
    parts = [configdoc.head_template(commented=False), configdoc.sources_template(commented=False)]
    parts += [configdoc.template_section(name, model, configdoc.INIT_VALUES.get(name), commented=False)
              for name, model in configdoc.sections()
              if configdoc.template_path(name).name == "template.toml"]
    text = Template("\n".join(parts)).safe_substitute(init_values("x", lang, country))
    # Alternatives the train model refuses together: keep the example of one.
    text = "\n".join(x for x in text.splitlines() if not x.startswith("replay_source ="))
    cfg = Config.model_validate(tomllib.loads(text))
    assert cfg.project.languages == [lang] and cfg.sources[0].jurisdiction == country
    for name, model in configdoc.sections():
        if name not in ("project", "policy", "sources"):
            _shows_defaults(model, getattr(cfg, name), name)
    assert cfg.evaluate.benchmarks[0].language == lang  # the example block, in the workspace's terms


class Toy(BaseModel):
    """A toy section."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    width: int = Field(3, ge=1, le=9)
    """How wide, in cells."""
    mode: Literal["a", "b"] = "a"
    """Which mode | and why."""
    path: str | None = Field(None, examples=["data/x.txt"])
    """A file; unset: none."""


def test_a_field_renders_its_description_default_and_constraints():
    text = configdoc.template_section("toy", Toy)
    assert text.splitlines()[:6] == ["[toy]", "# A toy section.", "", "# How wide, in cells.",
                                     "# width = 3", "# Which mode | and why."]
    assert '# path = "data/x.txt"' in text  # an unset default shows its example
    out: list[str] = []
    configdoc._reference_table(out, "[toy]", Toy, "")
    assert "| `width` | integer, ≥ 1, ≤ 9 | `3` | How wide, in cells. |" in out
    assert '| `mode` | one of `"a"`, `"b"` | `"a"` | Which mode \\| and why. |' in out
    assert any(r.startswith("| `path` | string | unset |") for r in out)


def test_a_field_without_a_description_is_refused():
    class Bare(BaseModel):
        """A section."""

        model_config = ConfigDict(use_attribute_docstrings=True)
        size: int = 1

    with pytest.raises(ValueError, match=r"Bare.size has no description"):
        configdoc.template_section("bare", Bare)
