"""A workspace: one folder per national model, holding its config, ledger and stage artifacts.

Stages never call each other; each reads the artifacts of the one before from the folders named
here and writes its own, so any stage can be rerun, resumed, or run on another machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from string import Template

from soberan import stages
from soberan.config import CONFIG_NAME, Config, ConfigError, check_country, check_language, load_config
from soberan.ledger import Ledger


@dataclass
class Workspace:
    root: Path

    @classmethod
    def open(cls, root: str | Path = ".") -> "Workspace":
        root = Path(root).resolve()
        if not (root / CONFIG_NAME).exists():
            raise ConfigError(f"{root}: not a soberan workspace (no {CONFIG_NAME}; run `soberan init {root}`)")
        ws = cls(root)
        ws.config  # validate before any work starts
        return ws

    @cached_property
    def config(self) -> Config:
        return load_config(self.root / CONFIG_NAME)

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.root)

    @cached_property
    def hash_cache(self):
        """File hashes keyed by size, mtime and inode, for deciding whether a recorded artifact
        is unchanged without reading it (soberan.documents.HashCache)."""
        from soberan.documents import HashCache

        return HashCache(self.root / "work" / "hashes.json")

    def unchanged(self, path: Path, sha256: str) -> bool:
        """Does the file or folder at `path` still hash to `sha256` (by the hash cache)?"""
        from soberan.documents import tree_sha256

        try:
            return path.exists() and tree_sha256(path, self.hash_cache) == sha256
        finally:
            self.hash_cache.save()

    def stage_dir(self, stage: str) -> Path:
        """The stage's folder, named for what it holds (the registry's `folder`)."""
        folder = stages.get(stage).folder
        if folder is None:
            raise KeyError(f"stage {stage!r} has no workspace folder")
        return self.root / folder


def package_file(*parts: str) -> Path:
    return Path(__file__).parent.joinpath(*parts)


def default_licenses(jurisdiction: str = "KR") -> list[str]:
    # Licenses that allow training and redistribution of a derived model; a lab narrows or widens
    # this list for its own law. LicenseRef-<country>-Public-Domain covers the state works that
    # the country's copyright law excludes (statutes, court decisions), named per jurisdiction
    # so a Thai workspace does not start with a Korean license. No NC (non-commercial) license is
    # in by default: a lab that may use one (research) adds it knowingly.
    return ["CC0-1.0", "CC-BY-4.0", "CC-BY-SA-4.0", "CC-BY-SA-3.0", "Apache-2.0", "MIT",
            "LicenseRef-Public-Domain", f"LicenseRef-{jurisdiction}-Public-Domain"]


def konlpy_corpus_dir() -> Path:
    """The Korean text the `konlpy` wheel ships: the Constitution and ten National Assembly bills
    (public domain under Art. 7 of the Korean Copyright Act). Read as plain files; no Java."""
    import importlib.util

    spec = importlib.util.find_spec("konlpy")
    if spec is None or not spec.origin:
        raise ConfigError("the konlpy package is not installed; it ships the demo's Korean corpus")
    return Path(spec.origin).parent / "data" / "corpus"


def set_keys(text: str, section: str, keys: dict[str, str]) -> str:
    """Set `key = value` lines (values as TOML) in a `[section]` of a generated config: replace the
    line when the template wrote one, add it under the header otherwise (in the order given), and
    add the table at the end when the file has none (the template writes sub-tables commented).
    For `soberan init --demo`, scripts and tests that adjust what `soberan init` wrote, keeping its
    comments."""
    import re

    head = re.search(rf"^\[{re.escape(section)}\][ \t]*\n", text, re.M)
    if head is None:
        text = text.rstrip("\n") + f"\n\n[{section}]\n"
        head = re.search(rf"^\[{re.escape(section)}\]\n", text, re.M)
    start = head.end()
    nxt = re.search(r"^\[", text[start:], re.M)
    end = start + nxt.start() if nxt else len(text)
    body, added = text[start:end], []
    for k, v in keys.items():
        line = re.compile(rf"^{re.escape(k)}\s*=.*$", re.M)
        if line.search(body):
            body = line.sub(lambda _m: f"{k} = {v}", body)
        else:
            added.append(f"{k} = {v}\n")
    return text[:start] + "".join(added) + body + text[end:]


def _answer_cue(lang: str) -> str:
    """The word before a benchmark's answer in the language (the example prompt template)."""
    from soberan.lang import get_pack

    try:
        return get_pack(lang).answer_cue
    except KeyError:
        return "Answer:"


def write_english_replay(path: Path) -> Path:
    """English text for the demo's replay share: the Python language reference that CPython
    ships (`pydoc_data.topics`, PSF-2.0), one JSONL record per topic. A base model trained on
    English forgets it when trained on Korean alone; a replay share holds that back, and its
    held-out units measure how much was forgotten. A lab points `replay_path` at its own."""
    import json

    from pydoc_data.topics import topics

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for name in sorted(topics):
            f.write(json.dumps({"id": f"pydoc/{name}", "text": topics[name]}, ensure_ascii=False) + "\n")
    return path


# What `soberan init --demo` sets over the stage templates: adapt the embedded open model
# (SmolLM2-135M-Instruct) with its own tokenizer (docs/train.md says why not an extension at this
# budget), and replay English so that forgetting is held back and measured. Values as TOML.
DEMO_VALUES: dict[str, dict[str, str]] = {
    "tokenizer": {"mode": '"keep"', "base": '"smollm2-135m-instruct"'},
    "train": {"base_model": '"smollm2-135m-instruct"', "replay_path": '"data/replay-en.jsonl"',
              "replay_license": '"PSF-2.0"', "replay_jurisdiction": '"US"', "replay_share": "0.2",
              "seq_len": "256", "micro_batch": "8", "max_steps": "6", "lr": "0.0003", "warmup_steps": "1",
              "eval_every": "6", "eval_max_bytes": "4000", "checkpoint_every": "6", "keep_checkpoints": "1",
              "tensorboard": "false"},
}


def init_values(name: str, lang: str, jurisdiction: str, demo: bool = False) -> dict[str, str]:
    """What the templates' placeholders (`$lang`, `$licenses`, ...) become for this workspace."""
    lang = check_language(lang)
    jurisdiction = check_country(jurisdiction)
    licenses = default_licenses(jurisdiction) + (["PSF-2.0"] if demo else [])
    return {
        "name": name, "lang": lang, "jurisdiction": jurisdiction,
        "jurisdictions": ", ".join(f'"{x}"' for x in dict.fromkeys([jurisdiction] + (["US"] if demo else []))),
        "licenses": ", ".join(f'"{x}"' for x in licenses),
        "answer_cue": _answer_cue(lang),
        "konlpy": konlpy_corpus_dir().as_posix() if demo else "",
    }


def render_config(name: str, lang: str, jurisdiction: str, demo: bool = False) -> str:
    """The commented `soberan.toml` that `soberan init` writes: a head (project, policy, sources)
    followed by one section per stage, each stage keeping its own commented template (all three
    generated from the settings models by soberan.configdoc)."""
    values = init_values(name, lang, jurisdiction, demo)
    parts = [Template(package_file("templates", "head.toml").read_text()).substitute(values)]
    parts.append(Template(package_file("templates", "demo_sources.toml" if demo else "sources.toml")
                          .read_text()).substitute(values))
    for stage in stages.STAGES:
        t = stages.package_file(stage, "template.toml") if stage.settings else None
        if t is not None and t.exists():
            parts.append(Template(t.read_text()).safe_substitute(values))
    text = "\n".join(p.rstrip() + "\n" for p in parts)
    for section, keys in (DEMO_VALUES if demo else {}).items():
        text = set_keys(text, section, keys)
    return text


def init_workspace(root: str | Path, *, lang: str, jurisdiction: str, name: str | None = None,
                   demo: bool = False, force: bool = False) -> Path:
    root = Path(root)
    cfg = root / CONFIG_NAME
    if cfg.exists() and not force:
        raise ConfigError(f"{cfg} already exists (use --force to overwrite)")
    root.mkdir(parents=True, exist_ok=True)
    cfg.write_text(render_config(name or root.resolve().name, lang, jurisdiction, demo), encoding="utf-8")
    if demo:
        write_english_replay(root / "data" / "replay-en.jsonl")
    load_config(cfg)  # what we write must itself be valid
    Ledger(root).record_event("init", config=CONFIG_NAME, lang=lang, jurisdiction=jurisdiction)
    return cfg
