"""Checksums that separate real identifiers from look-alike numbers: Luhn, IBAN mod-97, IPv6.

Each takes the matched text (separators included) and returns True when it is a valid
identifier of its kind. No Ray, no dependencies beyond the standard library.

    luhn_ok("4929-3813-3266-4295")          # True: a valid Visa number
    iban_ok("GB82 WEST 1234 5698 7654 32")  # True
    ipv6_ok("2001:4860::8888")              # True; "1::2" (a Python slice) is False
    ipv4_ok("203.0.113.9")                  # False: documentation range (RFC 5737)
    phone_ok("300 500 1200")                # False: bare digit groups split by spaces
"""
from __future__ import annotations

import ipaddress
import re

# Issuer prefixes (IIN ranges) and lengths: Visa 4 (13, 16, 19), Mastercard 51-55 / 2221-2720 (16),
# Amex 34/37 (15), Discover 6011/65/644-649 (16-19), Diners 36/38/300-305 (14-16), JCB 35 (16-19).
_CARD_PREFIX = re.compile(r"4\d{12}(?:\d{3}){0,2}|5[1-5]\d{14}|2[2-7]\d{14}|3[47]\d{13}|6\d{15,18}"
                          r"|3(?:0[0-5]|[68]\d)\d{11,13}|35\d{14,17}")
# ISO 13616 lengths for common countries; others only need 15-34 characters.
_IBAN_LENGTH = {"DE": 22, "GB": 22, "FR": 27, "ES": 24, "IT": 27, "NL": 18, "BE": 16, "CH": 21,
                "AT": 20, "PL": 28, "SE": 24, "DK": 18, "NO": 15, "FI": 18, "IE": 22, "PT": 25,
                "LU": 20, "CZ": 24, "HU": 28, "RO": 24, "GR": 27, "SA": 24, "AE": 23, "TR": 26}


def luhn_ok(match: str) -> bool:
    """13-19 digits with a card issuer prefix, one kind of separator, and a valid Luhn digit."""
    seps = set(re.sub(r"\d", "", match))
    digits = re.sub(r"\D", "", match)
    if len(seps) > 1 or not _CARD_PREFIX.fullmatch(digits):
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def iban_ok(match: str) -> bool:
    """Country length (where known) and the ISO 7064 mod-97 check."""
    iban = match.replace(" ", "")
    if not 15 <= len(iban) <= 34 or _IBAN_LENGTH.get(iban[:2], len(iban)) != len(iban):
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


# Addresses that never name a host: documentation ranges (RFC 5737, RFC 3849), "this network"
# 0.0.0.0/8, and masks. Found as false positives in the standard library's docs
# (benchmarks/pii_eval.py); version strings of single-digit parts (2.7.2.2) too.
_NOT_HOSTS = [ipaddress.ip_network(n) for n in ("0.0.0.0/8", "192.0.2.0/24", "198.51.100.0/24",
                                                "203.0.113.0/24", "2001:db8::/32", "::/128")]


def _is_mask(addr) -> bool:
    bits = int(addr)
    width = addr.max_prefixlen
    ones = bin(bits).count("1")
    return ones >= 8 and bits == ((1 << width) - 1) ^ ((1 << (width - ones)) - 1)


def _is_host(addr) -> bool:
    return not any(addr in net for net in _NOT_HOSTS if net.version == addr.version) and not _is_mask(addr)


def ipv4_ok(match: str) -> bool:
    """A host address: not a documentation / unspecified address, not a mask, and not four
    single digits (version numbers; 1.1.1.1 and 8.8.8.8 are public resolvers, not personal)."""
    try:
        addr = ipaddress.IPv4Address(match)
    except ValueError:
        return False
    return _is_host(addr) and not all(len(part) == 1 for part in match.split("."))


def ipv6_ok(match: str) -> bool:
    """A valid IPv6 host address that does not look like a slice or a clock: at least three
    groups, or two groups when one of them has three or more hex digits (fe80::1)."""
    try:
        addr = ipaddress.IPv6Address(match)
    except ValueError:
        return False
    groups = [g for g in re.split(r"[:.]", match) if g]
    shaped = len(groups) >= 3 or (len(groups) == 2 and max(map(len, groups)) >= 3)
    return shaped and _is_host(addr)


def phone_ok(match: str) -> bool:
    """International numbers (+CC ...) have 8 to 15 digits (E.164: at most 15); a North American
    number written with spaces alone needs its area code in parentheses or a leading +1/1, since
    bare groups such as "300 500 1200" are lists of numbers far more often than phones."""
    digits = re.sub(r"\D", "", match)
    text = match.strip()
    if text.startswith("+") and not (8 <= len(digits) <= 15):
        return False
    seps = set(re.sub(r"[\d()+]", "", text))
    return not (seps == {" "} and "(" not in text and not text.startswith(("+", "1 ")))
