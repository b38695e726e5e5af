"""Checks that separate real identifiers from look-alike numbers: card networks + Luhn, IBAN,
IPv4 / IPv6 hosts.

Each takes the matched text (separators included) and returns True when it is a valid
identifier of its kind. Checksums and the IBAN registry come from python-stdnum.

    card_ok("4929-3813-3266-4295")          # True: a valid Visa number
    card_ok("6759 6498 2643 8453")          # True: Maestro (12-19 digits, prefixes 50, 56-69)
    iban_ok("gb82 west 1234 5698 7654 32")  # True: case does not matter
    ipv6_ok("2001:4860::8888")              # True; "1::2" (a Python slice) is False
    ipv4_ok("203.0.113.9")                  # False: documentation range (RFC 5737)
"""
from __future__ import annotations

import ipaddress
import re

from stdnum import iban as _iban
from stdnum import luhn

# Issuer ranges (IIN prefixes, inclusive) and lengths of every major network, hand-written because
# no maintained library publishes them for detection (python-stdnum has the Luhn check only).
# Where a network's published range is narrower than what issuers and test generators use, the
# wider one is kept (JCB: 3528-3589 published, all of 35 used); a Luhn-valid look-alike with such a
# prefix and length is rare enough in text that the wider range costs no measurable precision.
CARD_NETWORKS = {
    "visa": ([(4, 4)], (13, 16, 19)),
    "mastercard": ([(51, 55), (2221, 2720)], (16,)),
    "amex": ([(34, 34), (37, 37)], (15,)),
    "discover": ([(6011, 6011), (644, 649), (65, 65), (622126, 622925)], range(16, 20)),
    "diners": ([(300, 305), (3095, 3095), (36, 36), (38, 39)], range(14, 20)),
    "jcb": ([(35, 35)], range(16, 20)),
    "jcb15": ([(1800, 1800), (2131, 2131)], (15,)),
    "unionpay": ([(62, 62), (81, 81)], range(16, 20)),
    "rupay": ([(60, 60), (65, 65), (81, 82), (508, 508), (353, 353), (356, 356)], (16,)),
    "mir": ([(2200, 2204)], range(16, 20)),
    "maestro": ([(50, 50), (56, 69)], range(12, 20)),  # last: its range holds the ones above
}
# How card numbers are printed: in 4s (the last group shorter), or Amex / Diners 4-6-5 / 4-6-4.
_CARD_GROUPS = re.compile(r"\d{4}(?:([ -])\d{4}(?:\1\d{4}){0,3}(?:\1\d{1,4})?|([ -])\d{6}\2\d{4,5})")


def card_network(digits: str) -> str | None:
    """The first network whose prefix range and length fit `digits` (digits only), or None."""
    for name, (ranges, lengths) in CARD_NETWORKS.items():
        if len(digits) in lengths and any(lo <= int(digits[:len(str(lo))]) <= hi for lo, hi in ranges):
            return name
    return None


def card_ok(match: str) -> bool:
    """12-19 digits of a card network, printed plain or in card groups, with a valid Luhn digit."""
    digits = re.sub(r"\D", "", match)
    if digits != match and not _CARD_GROUPS.fullmatch(match):
        return False
    return card_network(digits) is not None and luhn.is_valid(digits)


def iban_ok(match: str) -> bool:
    """Country length and BBAN format (the SWIFT registry in python-stdnum) and the ISO 7064
    mod-97 check; any case, spaces ignored. Not the national checks (check_country): stdnum's
    Belgian one, for one, rejects BE68 5390 0754 7034, the standard example, for a bank it does
    not list."""
    return _iban.is_valid(match, check_country=False)


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
    """A host address: not a documentation / unspecified address, not a mask, not four single
    digits (version numbers; 1.1.1.1 and 8.8.8.8 are public resolvers, not personal) and not a
    placeholder that counts 1, 2, 3, ... (`_counting`)."""
    try:
        addr = ipaddress.IPv4Address(match)
    except ValueError:
        return False
    return (_is_host(addr) and not all(len(part) == 1 for part in match.split("."))
            and not _counting("".join(match.split("."))))


def _counting(digits: str) -> bool:
    """The digits count up from 1 (123.45.67.89, 12.34.56.78, 1.23.45.67): the placeholder address
    that documentation writes where it means "some host", as 555 numbers are for phones."""
    return len(digits) >= 7 and "1234567890".startswith(digits)


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
