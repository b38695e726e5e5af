"""PII redaction: regular expressions, checksums and libphonenumber; one typed placeholder and
one count per type.

Types (config `pii_types`, all on by default), applied in this order so that a longer or more
specific match is replaced before a looser pattern could take part of it:

    private_key   PEM / PGP private key blocks                          <PRIVATE_KEY>
    aws_key       AWS access key ids, secret keys                       <AWS_KEY>
    github_token  ghp_/gho_/ghu_/ghs_/ghr_, github_pat_                 <GITHUB_TOKEN>
    slack_token   xox[abprs]- tokens, hooks.slack.com                   <SLACK_TOKEN>
    email                                                               <EMAIL>
    iban          any case; country format and mod-97 (python-stdnum)  <IBAN>
    credit_card   12-19 digits of a card network, card groups, Luhn     <CREDIT_CARD>
    ssn           US SSN ddd-dd-dddd, SSA-invalid ranges                <SSN>
    ipv6          validated with `ipaddress`                            <IP_ADDRESS>
    ipv4                                                                <IP_ADDRESS>
    phone         phonenumbers' PhoneNumberMatcher over regions         <PHONE>
                  (pii_phone.py: prefilter, look-alike rules, leniency)

Patterns favour recall on common formats; checksums (Luhn, mod-97, `ipaddress`), the card
networks and checks in pii_checks.py (no documentation IPs or masks) and the phone rules in
pii_phone.py keep ordinary numbers untouched. Recall per type on the NeMo-Curator gold sentences
is pinned in the tests; benchmarks/pii_eval.py measures it on a Faker set and the web.

    text, counts = redact("mail me at a@b.org", ["email", "phone"])
    # ("mail me at <EMAIL>", {"email": 1, "phone": 0})
    pii_spans("mail me at a@b.org", PII_TYPES)   # [("email", 11, 18)]: where redact would replace
    redact(text, PII_TYPES, phone_regions=["DE", "AT", "CH"])   # regions for national numbers
"""
from __future__ import annotations

import re

from pipelines.curation.pii_checks import card_ok, iban_ok, ipv4_ok, ipv6_ok
from pipelines.curation.pii_phone import PHONE_REGIONS, phone_spans

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
_IBAN = re.compile(r"\b[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,3})?\b")
# Not the fraction digits of a decimal number (1.2511263318488451 in a table of floats), not a
# +CC phone number.
_CARD = re.compile(r"(?<![\d+-])(?<!\d[.,])\d(?:[ -]?\d){11,18}(?![\d-])(?![.,]\d)")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\d-])")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|:|\d{1,3}(?:\.\d{1,3}){3})"
                   r"(?![\w:]|\.\w)")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# Lookarounds keep dotted version strings and OIDs (1.3.6.1.4.1) from matching.
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)(?![\w])")
# type: (pattern, placeholder, validator of the matched text or None), in application order;
# phone has a finder instead of a pattern (pii_phone.phone_spans). An IBAN or card match that
# fails its check is tried again without its trailing groups ("BE68 5390 0754 7034 from" -> the
# IBAN; "4111 1111 1111 1111 123" -> the card).
PATTERNS = {
    "private_key": (_PRIVATE_KEY, "<PRIVATE_KEY>", None),
    "aws_key": (_AWS_KEY, "<AWS_KEY>", None),
    "github_token": (_GITHUB, "<GITHUB_TOKEN>", None),
    "slack_token": (_SLACK, "<SLACK_TOKEN>", None),
    "email": (_EMAIL, "<EMAIL>", None),
    "iban": (_IBAN, "<IBAN>", iban_ok),
    "credit_card": (_CARD, "<CREDIT_CARD>", card_ok),
    "ssn": (_SSN, "<SSN>", None),
    "ipv6": (_IPV6, "<IP_ADDRESS>", ipv6_ok),
    "ipv4": (_IPV4, "<IP_ADDRESS>", ipv4_ok),
    "phone": (None, "<PHONE>", None),
}
PII_TYPES = list(PATTERNS)
_TRIMMABLE = {"iban", "credit_card"}


def find(kind: str, text: str, phone_regions=PHONE_REGIONS) -> list[tuple[int, int]]:
    """(start, end) of every `kind` match in text, in order: the part redact() replaces."""
    pattern, _, valid = PATTERNS[kind]
    if pattern is None:
        return phone_spans(text, phone_regions)
    spans = []
    for m in pattern.finditer(text):
        start = m.start() + len(m.groupdict().get("keep") or "")
        if valid is None:
            spans.append((start, m.end()))
            continue
        end = _valid_end(m.group(0), valid, kind in _TRIMMABLE)
        if end:
            spans.append((m.start(), m.start() + end))
    return spans


def _valid_end(match: str, valid, trim: bool) -> int:
    """Length of the longest valid prefix of `match` (the whole, or, when `trim`, the match cut
    before one of its separators); 0 when none is valid."""
    if valid(match):
        return len(match)
    if trim:
        for cut in sorted((i for i, c in enumerate(match) if c in " -"), reverse=True):
            if valid(match[:cut]):
                return cut
    return 0


def redact(text: str, types: list[str], phone_regions=PHONE_REGIONS) -> tuple[str, dict[str, int]]:
    """Replace every match of the chosen types, in PATTERNS order; counts per chosen type."""
    counts = {}
    for kind, (_, placeholder, _) in PATTERNS.items():
        if kind in types:
            spans = find(kind, text, phone_regions)
            counts[kind] = len(spans)
            if spans:
                parts, pos = [], 0
                for s, e in spans:
                    parts += [text[pos:s], placeholder]
                    pos = e
                text = "".join(parts) + text[pos:]
    return text, counts


def pii_spans(text: str, types: list[str], phone_regions=PHONE_REGIONS) -> list[tuple[str, int, int]]:
    """(type, start, end) of every match redact() would replace, in the original text, sorted.
    Earlier matches are masked by a same-length stand-in shaped like a placeholder ("<XXXX>"), so
    later patterns see what they would see in redact() and offsets stay put (for evaluation)."""
    spans = []
    for kind in PATTERNS:
        if kind not in types:
            continue
        for s, e in find(kind, text, phone_regions):
            spans.append((kind, s, e))
            text = text[:s] + _stand_in(e - s) + text[e:]
    return sorted(spans, key=lambda s: s[1])


def _stand_in(n: int) -> str:
    return "<" + "X" * (n - 2) + ">" if n >= 2 else "X" * n
