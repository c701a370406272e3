"""The workspace config, `soberan.toml`: load, validate, hash.

Every section is a small pydantic model with ``extra="forbid"``, so an unknown key, a wrong type,
an unknown SPDX license or an unknown ISO code is an error that names the key and the file before
any stage starts work. Each stage owns its section's model in ``soberan/<stage>/config.py``; this
module only assembles them.
"""

from __future__ import annotations

import re
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from soberan.collect.config import CollectSettings
from soberan.common import json_sha256
from soberan.curate.config import CurateSettings
from soberan.evaluate.config import EvaluateSettings
from soberan.heldout import HeldoutSettings
from soberan.serve.config import ServeSettings
from soberan.tokenizer.config import TokenizerSettings
from soberan.train.config import TrainSettings

CONFIG_NAME = "soberan.toml"


class ConfigError(ValueError):
    """A config problem, already phrased for a person: file, key, what is wrong."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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
    name: str = Field(min_length=1)
    jurisdiction: Country
    languages: list[Language] = Field(min_length=1)
    provider: str = "unknown provider"
    description: str = ""


class Policy(Strict):
    """What may enter the corpus. Every stage enforces it; a violation names the rule."""

    licenses: list[License] = Field(min_length=1)
    jurisdictions: list[Country] = Field(min_length=1)
    crawl_domains: list[str] = []  # domain suffixes such as "go.kr" or "korea.kr"

    @field_validator("crawl_domains")
    @classmethod
    def _dom(cls, v: list[str]) -> list[str]:
        return [d.strip().lower().lstrip(".") for d in v]


class FieldMap(Strict):
    """Which record fields of a JSONL/Parquet/CSV source hold what. A dotted name (`meta.url`)
    reaches into nested JSON objects and Parquet structs."""

    text: str = "text"
    id: str | None = None  # the record's own id; kept as `url` when no url field is mapped
    url: str | None = None
    license: str | None = None  # per-record license; checked against the policy like a source's
    jurisdiction: str | None = None
    date: str | None = None
    title: str | None = None
    lang: str | None = None


class Source(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    kind: Literal["files", "jsonl", "parquet", "csv", "warc", "crawl"]
    path: str | None = None  # files/jsonl/parquet/csv/warc: a file, folder or glob, relative to the workspace
    urls: list[str] = []  # crawl: seed URLs
    license: License
    jurisdiction: Country
    lang: Language | None = None  # a hint; curate still runs language ID
    include: list[str] = ["**/*"]  # globs under a folder `path` (default per kind: *.jsonl for jsonl...)
    exclude: list[str] = []
    fields: FieldMap = FieldMap()
    encoding: str | None = None  # force a legacy encoding instead of detecting it
    delimiter: str | None = None  # csv: the column separator (default "," or tab for .tsv/.tab)
    header: bool = True  # csv: the first row names the columns; false: every row is data
    columns: list[str] = []  # csv without a header: the column names in order (default f0, f1, ...)
    # files: one document per file ("file"), or per non-blank line of a text file ("line"), for
    # a corpus published one message or sentence a line (Wisesight, NTREX)
    split: Literal["file", "line"] = "file"
    # HTML (files, warc, crawl): trafilatura's main-text extraction
    html_format: Literal["txt", "markdown"] = "txt"
    favor: Literal["balanced", "precision", "recall"] = "balanced"
    # crawl: a polite crawler confined to policy.crawl_domains
    max_pages: int = Field(1000, ge=1)  # page budget (fetches, redirects excluded)
    max_depth: int = Field(5, ge=0)  # links followed from a seed
    rate_limit_s: float = Field(1.0, ge=0)  # seconds between requests to one host (robots.txt Crawl-delay wins if longer)
    user_agent: str = "soberan-collect/0.1 (national corpus; honours robots.txt)"  # add a contact URL or email
    timeout_s: float = Field(30.0, gt=0)
    description: str = ""

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


class Config(Strict):
    project: Project
    policy: Policy
    sources: list[Source] = []
    collect: CollectSettings = CollectSettings()
    curate: CurateSettings = CurateSettings()
    heldout: HeldoutSettings = HeldoutSettings()  # the one held-out split (soberan.heldout)
    tokenizer: TokenizerSettings = TokenizerSettings()
    train: TrainSettings = TrainSettings()
    evaluate: EvaluateSettings = EvaluateSettings()
    serve: ServeSettings = ServeSettings()

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
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, path)) from None
    cfg._path = path.resolve()
    names = [s.name for s in cfg.sources]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"{path}: sources: duplicate source name(s) {sorted(dup)}")
    return cfg


