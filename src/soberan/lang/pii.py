"""PII redaction with typed placeholders and national formats.

Each rule is a regex for candidates plus a validator (checksum, date, region code, numbering
plan) that a candidate must pass, so an ordinary number is left alone. Rules come from the
universal set here (e-mail, IBAN, payment cards, IP addresses, international phone numbers) and
from the language packs (national IDs and phones, `soberan.lang.<code>.PII`).

Nothing here logs, stores or returns an original value: `redact` returns the new text and the
list of types it replaced.

It sits with the language packs, not in a stage, because two stages redact with the same rules:
curate's `pii` step on the corpus, and serve's audit log on prompts and completions.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from soberan.lang import PiiRule, ascii_digits, digits, get_pack, personal_phone


def _luhn(d: str) -> bool:
    from stdnum import luhn

    return luhn.is_valid(d)


# Issuer prefixes (ISO/IEC 7812 IIN ranges of the card networks) and lengths: Visa 4 (13,16,19),
# Mastercard 51–55 and 2221–2720 (16), Amex 34/37 (15), Discover 6011/644–649/65, UnionPay 62,
# JCB 3528–3589, Diners 36/38/39/300–305, Maestro 50/56–69 (12–19).
def card_valid(s: str) -> bool:
    """13–19 digits of a known card network's prefix with a valid Luhn check digit."""
    d = digits(s)
    n = len(d)
    if not 13 <= n <= 19 or not _luhn(d):
        return False
    p2, p4 = int(d[:2]), int(d[:4])
    return (d[0] == "4" and n in (13, 16, 19)
            or (51 <= p2 <= 55 or 2221 <= p4 <= 2720) and n == 16
            or p2 in (34, 37) and n == 15
            or (p4 == 6011 or 644 <= int(d[:3]) <= 649 or p2 == 65 or p2 == 62) and n >= 16
            or 3528 <= p4 <= 3589 and n >= 16
            or (p2 in (36, 38, 39) or 300 <= int(d[:3]) <= 305) and n >= 14
            or (p2 == 50 or 56 <= p2 <= 69) and n >= 13)


def iban_valid(s: str) -> bool:
    """ISO 13616: the country's registered length and structure, and mod-97 == 1."""
    from stdnum import iban

    return iban.is_valid(ascii_digits(s).replace(" ", ""), check_country=False)


def ip_valid(s: str) -> bool:
    """A real IPv4/IPv6 address that is globally routable: private, loopback, link-local and
    documentation ranges identify no person. An IPv6 candidate needs three non-empty groups, so
    "::7" or "12::30" in running text is not taken for an address."""
    if ":" in s and sum(1 for g in s.split(":") if g) < 3:
        return False
    try:
        return ipaddress.ip_address(s).is_global
    except ValueError:
        return False


def intl_phone_valid(s: str) -> bool:
    """A `+CC …` number valid in its country's numbering plan (libphonenumber), any country."""
    return personal_phone(s, None)


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
EMAIL = PiiRule("EMAIL", r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
                         r"(?![A-Za-z0-9-])", None, "e-mail address")
IBAN = PiiRule("IBAN", r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}[ ]?[A-Z0-9]{4}(?:[ ]?[A-Z0-9]{4})?(?:[ ]?\d{1,4}){1,6}"
                       r"(?![A-Za-z0-9])", iban_valid, "IBAN with its mod-97 check digits")
# not inside a URL path or query ("/posts/2259969334286937/"), where long numbers are object ids
CARD = PiiRule("CARD", r"(?<![\d\-/=_.])[2-6]\d{3}(?:[ -]?\d){9,15}(?![\d\-/])", card_valid,
               "payment card: network prefix, 13–19 digits, Luhn check digit")
IPV4 = PiiRule("IP", rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)", ip_valid,
               "public IPv4 address")
IPV6 = PiiRule("IP", r"(?<![0-9A-Za-z:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Za-z:])",
               ip_valid, "public IPv6 address")
INTL_PHONE = PiiRule("PHONE", r"(?<![\w+])\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,5}(?:[\s.-]?\d{2,5}){1,4}"
                              r"(?![\d-]|\.\d)", intl_phone_valid,
                     "international phone number +CC…, valid in its country's numbering plan")

UNIVERSAL: tuple[PiiRule, ...] = (EMAIL, IBAN, CARD, IPV4, IPV6, INTL_PHONE)


def _is_phone(rule: PiiRule) -> bool:
    return rule.name.endswith("PHONE")


def rules_for(langs: Sequence[str]) -> tuple[PiiRule, ...]:
    """The universal rules plus those of each language's pack, deduplicated, in priority order:
    where two candidates overlap, the earlier rule wins. E-mail first (its local part may hold
    digits), then IBAN, then national IDs (checksummed, more specific than a card), cards, IP
    addresses, national phones, and international phones last (the weakest evidence)."""
    national = [r for code in langs for r in get_pack(code).pii]
    ids = [r for r in national if not _is_phone(r)]
    phones = [r for r in national if _is_phone(r)]
    ordered = [EMAIL, IBAN, *ids, CARD, IPV4, IPV6, *phones, INTL_PHONE]
    return tuple(dict.fromkeys(ordered))


@dataclass(frozen=True)
class _Group:
    """Rules that share one regex scan: the same pattern, tried against each rule's validator in
    priority order (all national phone rules share one candidate pattern)."""

    regex: re.Pattern
    rules: tuple[tuple[int, PiiRule], ...]  # (priority, rule)
    needs: re.Pattern  # a cheap pre-check: skip the scan when the text cannot hold a match


_NEEDS_DIGIT = re.compile(r"\d")
_NEEDS_AT = re.compile("@")


@lru_cache(maxsize=64)
def _compile(rules: tuple[PiiRule, ...]) -> tuple[_Group, ...]:
    by_pattern: dict[tuple[str, int], list[tuple[int, PiiRule]]] = {}
    for prio, rule in enumerate(rules):
        by_pattern.setdefault((rule.pattern, rule.flags), []).append((prio, rule))
    groups = []
    for (pattern, flags), members in by_pattern.items():
        needs = _NEEDS_AT if "@" in pattern else _NEEDS_DIGIT
        groups.append(_Group(re.compile(pattern, flags), tuple(members), needs))
    return tuple(groups)


@lru_cache(maxsize=256)
def _context_regex(keywords: tuple[str, ...]) -> re.Pattern:
    # whole words only: "tin" must not fire inside "tindahan" or "Latin"
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(k) for k in keywords) + r")(?!\w)")


def _context_ok(rule: PiiRule, text: str, start: int) -> bool:
    """A keyword within `context_window` characters before the candidate, on the same line."""
    if not rule.context:
        return True
    lo = max(0, start - rule.context_window, text.rfind("\n", 0, start) + 1)
    return _context_regex(rule.context).search(text[lo:start].casefold()) is not None


# One number written in one style: digits with at most one kind of separator ("4111 0812 3456
# 7891", "4111-0812-..."), as a card or ID is written; "5123 4567 010-1234-5678" is two numbers.
_ONE_NUMBER = re.compile(r"\d+(?:(?P<sep>[ .\-–])\d+)?(?:(?P=sep)\d+)*")


def find(text: str, rules: Sequence[PiiRule]) -> list[tuple[int, int, str]]:
    """Validated, non-overlapping PII spans `(start, end, type)` in text order. One regex scan per
    distinct pattern; overlaps go to the rule listed first.

    A number that a rule took as a whole candidate and rejected (a 16-digit number failing the
    Luhn check) is not then redacted piecewise by another rule (its last 12 digits as a phone):
    the rejection says what the number is not, and a piece of it is no person's phone either."""
    found: list[tuple[int, int, int, str]] = []  # (priority, start, end, type)
    rejected: list[tuple[int, int]] = []
    for g in _compile(tuple(rules)):
        if not g.needs.search(text):
            continue
        for m in g.regex.finditer(text):
            s = m.group(0)
            for prio, rule in g.rules:
                if _context_ok(rule, text, m.start()) and (rule.validate is None or rule.validate(s)):
                    found.append((prio, m.start(), m.end(), rule.name))
                    break
            else:
                if _ONE_NUMBER.fullmatch(s):
                    rejected.append((m.start(), m.end()))
    if rejected and found:
        found = [f for f in found if not any(s <= f[1] and f[2] <= e and (s, e) != (f[1], f[2])
                                             for s, e in rejected)]
    if not found:
        return []
    found.sort()
    taken: list[tuple[int, int, str]] = []
    for _, start, end, name in found:
        if all(end <= s or start >= e for s, e, _ in taken):
            taken.append((start, end, name))
    taken.sort()
    return taken


def redact(text: str, rules: Sequence[PiiRule]) -> tuple[str, list[str]]:
    """`text` with each validated identifier replaced by its typed placeholder (`<KR_RRN>`,
    `<EMAIL>`), and the types replaced, in text order. The original values are not returned."""
    spans = find(text, rules)
    if not spans:
        return text, []
    out, pos = [], 0
    for start, end, name in spans:
        out.append(text[pos:start])
        out.append(f"<{name}>")
        pos = end
    out.append(text[pos:])
    return "".join(out), [name for _, _, name in spans]


def redact_batch(texts: Sequence[str], rules: Sequence[PiiRule]) -> tuple[list[str], list[list[str]]]:
    """`redact` over a batch (e.g. an Arrow column's `to_pylist()`); None stays None."""
    rules = tuple(rules)
    out_texts, out_types = [], []
    for t in texts:
        if t is None:
            out_texts.append(None)
            out_types.append([])
            continue
        r, types = redact(t, rules)
        out_texts.append(r)
        out_types.append(types)
    return out_texts, out_types

