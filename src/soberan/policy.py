"""The policy every stage enforces: allowed licenses, jurisdictions and crawl domains.

A violation is an error that names the rule and the thing that broke it, never a silent skip.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from soberan.config import Config, Policy, Source


class PolicyError(Exception):
    """A source, document or URL that the workspace's policy forbids."""


def license_allowed(policy: Policy, license: str) -> bool:
    """True when the license, or every alternative of an `A OR B` expression, is listed
    (conjunctions `A AND B` need both)."""
    allowed = set(policy.licenses)
    if license in allowed:
        return True
    expr = license.replace("(", " ").replace(")", " ")
    if " OR " in expr:
        return any(license_allowed(policy, part.strip()) for part in expr.split(" OR "))
    if " AND " in expr:
        return all(license_allowed(policy, part.strip()) for part in expr.split(" AND "))
    return False


def document_violation(policy: Policy, license: str, jurisdiction: str) -> tuple[str, str] | None:
    """(rule, reason) when a document's license or jurisdiction is not allowed, else None: the
    one check behind collect's per-record rejections and training's refusal of a corpus."""
    if not license_allowed(policy, license):
        return "policy.licenses", f"license {license!r} is not allowed by policy.licenses"
    if jurisdiction not in policy.jurisdictions:
        return "policy.jurisdictions", f"jurisdiction {jurisdiction!r} is not allowed by policy.jurisdictions"
    return None


def check_source(cfg: Config, source: Source) -> None:
    p = cfg.policy
    if bad := document_violation(p, source.license, source.jurisdiction):
        rule, why = bad
        raise PolicyError(f"source {source.name!r}: {why} {getattr(p, rule.removeprefix('policy.'))}")
    if source.kind == "crawl":
        for url in source.urls:
            if not domain_allowed(p, url):
                raise PolicyError(f"source {source.name!r}: seed {url} is outside "
                                  f"policy.crawl_domains {p.crawl_domains}")


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def domain_allowed(policy: Policy, url: str) -> bool:
    """http(s) on an allowed host: a listed name or a subdomain of one. Suffix matching makes no
    sense for IP addresses (`10.127.0.0.1` is not below `127.0.0.1`), so addresses match only
    exactly, both ways round."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return False
    host = (parts.hostname or "").lower().rstrip(".")
    if _is_ip(host):
        return host in policy.crawl_domains
    return any(host == d or host.endswith("." + d) for d in policy.crawl_domains if not _is_ip(d))
