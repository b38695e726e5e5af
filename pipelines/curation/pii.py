"""PII redaction: regular expressions plus checksums, one typed placeholder and one count per type.

Types (config `pii_types`, all on by default), applied in this order so that a longer or more
specific match is replaced before a looser pattern could take part of it:

    private_key   PEM / PGP private key blocks            <PRIVATE_KEY>
    aws_key       AWS access key ids, secret keys         <AWS_KEY>
    github_token  ghp_/gho_/ghu_/ghs_/ghr_, github_pat_   <GITHUB_TOKEN>
    slack_token   xox[abprs]- tokens, hooks.slack.com     <SLACK_TOKEN>
    email                                                 <EMAIL>
    iban          ISO 13616, mod-97 checksum              <IBAN>
    credit_card   13-19 digits, card prefix + Luhn        <CREDIT_CARD>
    ssn           US SSN ddd-dd-dddd, SSA-invalid ranges  <SSN>
    ipv6          validated with `ipaddress`              <IP_ADDRESS>
    ipv4                                                  <IP_ADDRESS>
    phone         NANP and +country numbers               <PHONE>

Patterns favour recall on common formats; checksums (Luhn, mod-97, `ipaddress`) and the checks
in pii_checks.py (no documentation IPs or masks, no bare space-separated digit groups as phones)
keep ordinary numbers untouched. Recall per type on the NeMo-Curator gold sentences is pinned in the tests.

    text, counts = redact("mail me at a@b.org", ["email", "phone"])
    # ("mail me at <EMAIL>", {"email": 1, "phone": 0})
    pii_spans("mail me at a@b.org", PII_TYPES)   # [("email", 11, 18)]: where redact would replace
"""
from __future__ import annotations

import re

from pipelines.curation.pii_checks import iban_ok, ipv4_ok, ipv6_ok, luhn_ok, phone_ok

_PRIVATE_KEY = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY((?: BLOCK)?)-----.*?-----END \1PRIVATE KEY\2-----", re.S)
# An access key id anywhere; a 40-character secret only as the value of an aws...key/secret field
# (the name is kept, the value replaced).
_AWS_KEY = re.compile(r"""
    \b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|A3T[A-Z0-9])[A-Z0-9]{16}\b
  | (?P<keep>(?i:aws[\w-]{0,30}(?:secret|key))["']?\s*[:=]\s*["']?)[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])
    """, re.X)
_GITHUB = re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b")
_SLACK = re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}|https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+")
# ASCII local part (so "网站fyzw88@126.com" yields the address alone), and no "@" before it: a
# fediverse handle (@user@mastodon.social) is not an email address.
_EMAIL = re.compile(r"(?<![A-Za-z0-9.%+@-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
# Not the fraction digits of a decimal number (1.2511263318488451 in a table of floats).
_CARD = re.compile(r"(?<![\d-])(?<!\d[.,])\d(?:[ -]?\d){12,18}(?![\d-])(?![.,]\d)")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\d-])")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|:|\d{1,3}(?:\.\d{1,3}){3})"
                   r"(?![\w:]|\.\w)")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# Lookarounds keep dotted version strings and OIDs (1.3.6.1.4.1) from matching.
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)(?![\w])")
# North American numbers ((814) 360 8593, +1-212-456-7890, 2312322334) and international
# numbers written with a leading + and groups (+44 20 7946 0958). A bare run of digits needs
# exactly 10 digits with NANP-valid area and exchange codes, which spares most other numbers.
_PHONE = re.compile(r"""
    (?<![\w+.-])(?:
        (?:\+?1[\s.-]?)?\(?[2-9]\d{2}\)?[\s.-]?[2-9]\d{2}[\s.-]?\d{4}   # NANP
      | \+[1-9]\d{0,2}(?:[\s.-]?\(?\d{1,4}\)?){2,5}                     # +CC groups
    )(?![\w-])""", re.X)

# type: (pattern, placeholder, validator of the matched text or None), in application order.
PATTERNS = {
    "private_key": (_PRIVATE_KEY, "<PRIVATE_KEY>", None),
    "aws_key": (_AWS_KEY, "<AWS_KEY>", None),
    "github_token": (_GITHUB, "<GITHUB_TOKEN>", None),
    "slack_token": (_SLACK, "<SLACK_TOKEN>", None),
    "email": (_EMAIL, "<EMAIL>", None),
    "iban": (_IBAN, "<IBAN>", iban_ok),
    "credit_card": (_CARD, "<CREDIT_CARD>", luhn_ok),
    "ssn": (_SSN, "<SSN>", None),
    "ipv6": (_IPV6, "<IP_ADDRESS>", ipv6_ok),
    "ipv4": (_IPV4, "<IP_ADDRESS>", ipv4_ok),
    "phone": (_PHONE, "<PHONE>", phone_ok),
}
PII_TYPES = list(PATTERNS)


def redact(text: str, types: list[str]) -> tuple[str, dict[str, int]]:
    """Replace every match of the chosen types, in PATTERNS order; counts per chosen type."""
    counts = {}
    for kind, (pattern, placeholder, valid) in PATTERNS.items():
        if kind in types:
            text, counts[kind] = _sub(pattern, placeholder, valid, text)
    return text, counts


def _sub(pattern: re.Pattern, placeholder: str, valid, text: str) -> tuple[str, int]:
    """pattern.subn, skipping matches the validator rejects and keeping a `keep` group."""
    n = 0

    def replace(m: re.Match) -> str:
        nonlocal n
        if valid is not None and not valid(m.group(0)):
            return m.group(0)
        n += 1
        return (m.groupdict().get("keep") or "") + placeholder

    return pattern.sub(replace, text), n


def pii_spans(text: str, types: list[str]) -> list[tuple[str, int, int]]:
    """(type, start, end) of every match redact() would replace, in the original text, sorted.
    Earlier matches are masked by a same-length stand-in shaped like a placeholder ("<XXXX>"), so
    later patterns see what they would see in redact() and offsets stay put (for evaluation)."""
    spans = []
    for kind, (pattern, _, valid) in PATTERNS.items():
        if kind not in types:
            continue
        found = [m for m in pattern.finditer(text) if valid is None or valid(m.group(0))]
        for m in found:
            start = m.start() + len(m.groupdict().get("keep") or "")
            spans.append((kind, start, m.end()))
            text = text[:start] + _stand_in(m.end() - start) + text[m.end():]
    return sorted(spans, key=lambda s: s[1])


def _stand_in(n: int) -> str:
    return "<" + "X" * (n - 2) + ">" if n >= 2 else "X" * n
