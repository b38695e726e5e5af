"""PII redaction: one pinned case per type, look-alikes left alone, recall per type on gold tags.

    python -m pytest tests/test_curation_pii.py -q      (a second, no Ray)
The gold-tag test uses ../shared/data/pii (NeMo-Curator's tagged sentences) and skips without it.
"""
from __future__ import annotations

import re
from collections import defaultdict

import pytest

from pipelines.curation.pii import PII_TYPES, redact
from pipelines.curation.pii_checks import iban_ok, ipv6_ok, luhn_ok

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nq2Xh\n-----END RSA PRIVATE KEY-----"


@pytest.mark.parametrize("kind, text, expected", [
    ("email", "mail jane.doe+x@mail.example.co.uk now", "mail <EMAIL> now"),
    ("phone", "call (814) 360 8593 today", "call <PHONE> today"),
    ("phone", "call +1-212-456-7890.", "call <PHONE>."),
    ("phone", "ring +44 20 7946 0958", "ring <PHONE>"),
    ("ipv4", "host 192.168.0.12.", "host <IP_ADDRESS>."),
    ("ipv6", "ip 2a00:1450::1 and fe80::1ff:fe23:4567:890a", "ip <IP_ADDRESS> and <IP_ADDRESS>"),
    ("ipv6", "full 2a00:1450:4001:082b:0000:8a2e:0370:7334.", "full <IP_ADDRESS>."),
    ("credit_card", "visa 4929-3813-3266-4295, amex 345389698201044", "visa <CREDIT_CARD>, amex <CREDIT_CARD>"),
    ("credit_card", "mc 5299 1561 5689 1938", "mc <CREDIT_CARD>"),
    ("ssn", "SSN 514-14-8905 or 284 89 3485", "SSN <SSN> or <SSN>"),
    ("iban", "pay GB82 WEST 1234 5698 7654 32 or DE89370400440532013000", "pay <IBAN> or <IBAN>"),
    ("aws_key", "id AKIAIOSFODNN7EXAMPLE", "id <AWS_KEY>"),
    ("aws_key", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
     "aws_secret_access_key = <AWS_KEY>"),
    ("github_token", "t ghp_1234567890abcdefghijABCDEFGHIJ123456 end", "t <GITHUB_TOKEN> end"),
    ("github_token", "github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "<GITHUB_TOKEN>"),
    ("slack_token", "xoxb-123456789012-1234567890123-AbCdEfGhIjKl", "<SLACK_TOKEN>"),
    ("slack_token", "https://hooks.slack.com/services/T000/B000/XXXX", "<SLACK_TOKEN>"),
    ("private_key", f"key:\n{PEM}\nafter", "key:\n<PRIVATE_KEY>\nafter"),
])
def test_each_pii_type(kind, text, expected):
    out, counts = redact(text, PII_TYPES)
    assert out == expected
    assert counts[kind] == expected.count("<") and sum(counts.values()) == counts[kind]


@pytest.mark.parametrize("text", [
    "version 3.12.1", "OID 1.3.6.1.4.1", "x = 1234567890", "2024-05-01 12:30:45", "call 555-1234",
    "sys.maxsize 9223372036854775807", "card 4929-3813-3266-4296", "order 1234 5678 9012 3456",
    "ssn 000-12-3456 or 666-12-3456", "GB82 WEST 1234 5698 7654 33", "a[1::2] and std::vector",
    "sha 4f9c2a7e1b3d5f60718293a4b5c6d7e8f9012345", "-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----",
    # False positives found on real text by benchmarks/pii_eval.py, fixed since:
    "1.2511263318488451 and 3.4114080550460080",  # float digits taken for cards
    "via @mhoye@mastodon.social",  # a fediverse handle, not an email
    "20 +30 +120 +10 minutes", "karyotype 47,XY,+13 47,XX,+18", "+14.4 L atm",  # not +CC phones
    "options: 300 500 1200 1500",  # bare space-separated groups
    "IPv4Address('192.0.2.130'), netmask 255.255.255.224, hostmask 0.0.0.31, bind 0.0.0.0",
    "IPv6Address('2001:db8::1000') mask ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0",
    "invalid versions: 2.7.2.2 3.1.1.6",
])
def test_look_alikes_are_left_alone(text):
    assert redact(text, PII_TYPES)[0] == text


def test_email_local_part_is_ascii():
    assert redact("网站地图fyzw88@126.com 郑重声明", PII_TYPES)[0] == "网站地图<EMAIL> 郑重声明"


def test_checksums():
    assert luhn_ok("4111 1111 1111 1111") and not luhn_ok("4111 1111 1111 1112")
    assert not luhn_ok("4111-1111 1111-1111")  # mixed separators
    assert iban_ok("FR14 2004 1010 0505 0001 3M02 606") and not iban_ok("FR14 2004 1010 0505 0001 3M02 607")
    assert ipv6_ok("::ffff:198.18.0.1") and not ipv6_ok("1::2") and not ipv6_ok("12:30:45")


def test_only_chosen_types():
    text = "a@b.org 514-14-8905"
    assert redact(text, ["ssn"]) == ("a@b.org <SSN>", {"ssn": 1})


GOLD_TYPES = {"email": "email", "phone_number": "phone", "ip_address": "ipv4",
              "credit_card_number": "credit_card", "ssn": "ssn"}


def test_recall_per_type_on_gold_tags(shared_data):
    """NeMo-Curator gold sentences, measured: recall 1.0 for every type (emails 4/4, phones 6/6,
    IPs 2/2, cards 3/3, SSNs 3/3); names, addresses and birth dates (not ours) left intact."""
    found, total, collateral = defaultdict(int), defaultdict(int), 0
    for path in sorted((shared_data / "pii").glob("*.txt")):
        for line in path.read_text().splitlines():
            out, _ = redact(re.sub(r"</?[a-z_]+>", "", line), PII_TYPES)
            for tag, value in re.findall(r"<([a-z_]+)>(.*?)</\1>", line):
                if tag in GOLD_TYPES:
                    total[tag] += 1
                    found[tag] += value not in out
                else:
                    collateral += value not in out
    assert set(total) == set(GOLD_TYPES)
    recall = {t: found[t] / total[t] for t in total}
    assert all(r >= 0.98 for r in recall.values()), recall
    assert collateral <= 2
