"""The workspace config, `soberan.toml`: load, validate, hash.

Every section is a small pydantic model with ``extra="forbid"``, so an unknown key, a wrong type,
an unknown SPDX license or an unknown ISO code is an error that names the key and the file before
any stage starts work. Each stage owns its section's model in ``soberan/<stage>/config.py``; this
module only assembles them, in the order and under the names the stage registry
(``soberan.stages``) gives, without importing any stage by name.
"""

from __future__ import annotations

import re
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from soberan import stages
from soberan.common import json_sha256
from soberan.heldout import HeldoutSettings

CONFIG_NAME = "soberan.toml"


class ConfigError(ValueError):
    """A config problem, already phrased for a person: file, key, what is wrong."""


class Strict(BaseModel):
    # The docstring under a field is its description: soberan.configdoc writes the template and
    # docs/config.md from it, so each setting is explained once.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


# --- code lists: validated against maintained registries, never hand-kept lists -------------

_LICENSE_REF = re.compile(r"^LicenseRef-[A-Za-z0-9.\-]+$")


@lru_cache(maxsize=1)
def _spdx():
    from license_expression import get_spdx_licensing

    return get_spdx_licensing()


def check_license(value: str) -> str:
    """An SPDX license expression, or a `LicenseRef-...` for a license SPDX does not list."""
    if _LICENSE_REF.match(value):
        return value
    info = _spdx().validate(value)
    if info.errors:
        raise ValueError(f"unknown SPDX license {value!r} ({'; '.join(info.errors)}); "
                         "use an SPDX id (https://spdx.org/licenses/) or LicenseRef-<name>")
    return value


def check_language(value: str) -> str:
    """An ISO 639-1 or 639-3 language code (``fil`` is accepted as Filipino)."""
    import pycountry

    code = value.strip().lower()
    if len(code) == 2 and pycountry.languages.get(alpha_2=code):
        return code
    if len(code) == 3 and pycountry.languages.get(alpha_3=code):
        return code
    raise ValueError(f"unknown ISO 639 language code {value!r}")


def check_country(value: str) -> str:
    """An ISO 3166-1 alpha-2 country code."""
    import pycountry

    code = value.strip().upper()
    if len(code) == 2 and pycountry.countries.get(alpha_2=code):
        return code
    raise ValueError(f"unknown ISO 3166-1 alpha-2 country code {value!r}")


License = Annotated[str, AfterValidator(check_license)]
Language = Annotated[str, AfterValidator(check_language)]
Country = Annotated[str, AfterValidator(check_country)]


# --- sections ---------------------------------------------------------------------------------

class Project(Strict):
    """Who builds which model: the name, country and languages reach the model card, the report and
    the EU AI Act summary."""

    name: str = Field(min_length=1)
    """The model's name, used in the model card and the report."""
    jurisdiction: Country
    """ISO 3166-1 alpha-2 code of the country whose model this is."""
    languages: list[Language] = Field(min_length=1)
    """ISO 639 codes of the target languages, main language first. They choose the language packs
    of `curate` (thresholds, PII formats) and the languages the tokenizer learns."""
    provider: str = "unknown provider"
    """Who builds the model, for the model card and the EU AI Act summary."""
    description: str = ""
    """What the model is for, for the model card."""


class Policy(Strict):
    """What may enter the corpus. Every stage enforces it: a violation is an error naming the
    source and the rule, never a silent skip."""

    licenses: list[License] = Field(min_length=1)
    """SPDX ids (or `LicenseRef-...`) that may enter the corpus; a source under any other is refused
    with an error naming the rule. `soberan init` writes licenses that allow training and
    redistribution and no non-commercial (NC) one: a lab that may use one for research adds it
    knowingly."""
    jurisdictions: list[Country] = Field(min_length=1)
    """Countries whose sources may be collected (ISO 3166-1 alpha-2)."""
    crawl_domains: list[str] = Field([], examples=[["go.th", "gov.sa"]])
    """Domain suffixes the crawler may visit (`go.th` allows `www.ratchakitcha.soc.go.th`);
    everything else, redirects included, is refused."""

    @field_validator("crawl_domains")
    @classmethod
    def _dom(cls, v: list[str]) -> list[str]:
        return [d.strip().lower().lstrip(".") for d in v]


class FieldMap(Strict):
    """Which record fields of a JSONL/Parquet/CSV source hold what, e.g.
    `fields = { text = "body", url = "meta.url" }`. A dotted name (`meta.url`) reaches into nested
    JSON objects and Parquet structs."""

    text: str = "text"
    """The field holding the document's text."""
    id: str | None = Field(None, examples=["doc_id"])
    """The record's own id; kept as `url` when no url field is mapped."""
    url: str | None = Field(None, examples=["url"])
    """The document's address, kept for lineage and take-down requests."""
    license: str | None = Field(None, examples=["license"])
    """A per-record license, checked against the policy like a source's."""
    jurisdiction: str | None = Field(None, examples=["country"])
    """A per-record country, checked against the policy like a source's."""
    date: str | None = Field(None, examples=["date"])
    """The document's date."""
    title: str | None = Field(None, examples=["title"])
    """The document's title."""
    lang: str | None = Field(None, examples=["lang"])
    """A per-record language hint; curate still runs language ID."""


class Source(Strict):
    """Sources: one `[[sources]]` table each, for every corpus to collect. Paths are relative to
    this file. kind is one of files, jsonl, parquet, csv, warc, crawl (docs/collect.md: every
    kind and the crawler)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    """The source's name, unique in the workspace; its shards go to `raw/<name>/`."""
    kind: Literal["files", "jsonl", "parquet", "csv", "warc", "crawl"]
    """How the source is read. A `.zip` input is read member by member."""
    path: str | None = Field(None, examples=["data/laws/*.jsonl"])
    """files/jsonl/parquet/csv/warc: a file, folder or glob, relative to the workspace."""
    urls: list[str] = Field([], examples=[["https://www.ratchakitcha.soc.go.th/"]])
    """crawl: the seed URLs."""
    license: License
    """The source's SPDX license (or `LicenseRef-...`), checked against `[policy] licenses`."""
    jurisdiction: Country
    """The country the source comes from, checked against `[policy] jurisdictions`."""
    lang: Language | None = Field(None, examples=["th"])
    """The source's language: a hint; curate still runs language ID."""
    include: list[str] = ["**/*"]
    """Globs under a folder `path` (default per kind: `*.jsonl` for jsonl...)."""
    exclude: list[str] = []
    """Globs under a folder `path` to leave out."""
    fields: FieldMap = FieldMap()
    encoding: str | None = Field(None, examples=["cp949"])
    """Force a legacy encoding instead of detecting it."""
    delimiter: str | None = Field(None, examples=[";"])
    """csv: the column separator (default `,`, or tab for .tsv/.tab)."""
    header: bool = True
    """csv: the first row names the columns; false: every row is data (then name them in
    `columns`)."""
    columns: list[str] = []
    """csv without a header: the column names in order (default f0, f1, ...)."""
    split: Literal["file", "line"] = "file"
    """files: one document per file ("file"), or per non-blank line of a text file ("line"), for a
    corpus published one message or sentence a line (Wisesight, NTREX)."""
    html_format: Literal["txt", "markdown"] = "txt"
    """HTML (files, warc, crawl): what trafilatura's main-text extraction writes."""
    favor: Literal["balanced", "precision", "recall"] = "balanced"
    """HTML: trafilatura's trade-off between keeping boilerplate and losing text."""
    max_pages: int = Field(1000, ge=1)
    """crawl: the page budget (fetches; redirects excluded). The crawler is polite and confined to
    `[policy] crawl_domains`."""
    max_depth: int = Field(5, ge=0)
    """crawl: links followed from a seed."""
    rate_limit_s: float = Field(1.0, ge=0)
    """crawl: seconds between requests to one host (robots.txt Crawl-delay wins if longer)."""
    user_agent: str = "soberan-collect/0.1 (national corpus; honours robots.txt)"
    """crawl: the User-Agent sent; add a contact URL or email."""
    timeout_s: float = Field(30.0, gt=0)
    """crawl: seconds a request may take."""
    description: str = ""
    """What the source is, for the report and the data card."""

    @model_validator(mode="after")
    def _where(self) -> "Source":
        if self.kind == "crawl" and not self.urls:
            raise ValueError(f"source {self.name!r}: a crawl source needs `urls` (seed URLs)")
        if self.kind != "crawl" and not self.path:
            raise ValueError(f"source {self.name!r}: a {self.kind} source needs `path`")
        if self.split != "file" and self.kind != "files":
            raise ValueError(f"source {self.name!r}: split = {self.split!r} is for files sources; "
                             f"a {self.kind} source has one document per record already")
        if (not self.header or self.columns) and self.kind != "csv":
            raise ValueError(f"source {self.name!r}: header/columns are for csv sources")
        if self.columns and self.header:
            raise ValueError(f"source {self.name!r}: columns names the columns of a file without a "
                             "header row; set header = false too")
        return self


class ConfigBase(Strict):
    """The sections every workspace has; `Config` adds one section per stage with settings."""

    project: Project
    policy: Policy
    sources: list[Source] = []
    heldout: HeldoutSettings = HeldoutSettings()  # the one held-out split (soberan.heldout)

    # Where the file was read from; relative paths in the config resolve against its folder.
    _path: Path | None = None

    @property
    def root(self) -> Path:
        return self._path.parent if self._path else Path.cwd()

    def resolve(self, p: str | Path) -> Path:
        p = Path(p).expanduser()
        return p if p.is_absolute() else (self.root / p)

    def section_hash(self, *names: str) -> str:
        """A stable hash of the named sections, for "has this stage's config changed?"."""
        dump = self.model_dump(mode="json")
        body = {n: dump.get(n) for n in names}
        return json_sha256(body)


@lru_cache(maxsize=4)
def config_model(registry: tuple[stages.Stage, ...]) -> type[ConfigBase]:
    """The `Config` model for a stage registry: the common sections plus `[<stage>]` for each
    stage that declares a settings model, each defaulting to its model's defaults."""
    from pydantic import create_model

    fields: dict[str, Any] = {}
    for st in registry:
        if st.settings:
            model = stages.load(st.settings)
            fields[st.name] = (model, model())
    return create_model("Config", __base__=ConfigBase, __module__=__name__, **fields)


# The model of the shipped registry, for type hints and code that builds a config in memory.
Config = config_model(stages.STAGES)


def _format_errors(err: ValidationError, path: Path) -> str:
    lines = [f"{path}: invalid config ({err.error_count()} problem{'s' * (err.error_count() > 1)})"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        lines.append(f"  {key}: {msg}" + (f" (got {e['input']!r})" if e["type"] != "extra_forbidden"
                                           and not isinstance(e.get("input"), dict | list) else ""))
    return "\n".join(lines)


def load_config(path: str | Path) -> Config:
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_NAME
    if not path.exists():
        raise ConfigError(f"{path}: no config file (run `soberan init` to write one)")
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    try:
        cfg = config_model(stages.STAGES).model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, path)) from None
    cfg._path = path.resolve()
    names = [s.name for s in cfg.sources]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"{path}: sources: duplicate source name(s) {sorted(dup)}")
    return cfg


