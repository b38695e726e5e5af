"""PII redaction: one pinned case per type and per phone / card / IBAN format, look-alikes left
alone, recall per type on gold tags (NeMo-Curator's sentences and the Faker set).

    python -m pytest tests/test_curation_pii.py -q      (a few seconds, no Ray)
The NeMo test uses ../shared/data/pii and skips without it; the Faker-set test reads the committed
benchmarks/pii_faker_set.txt (benchmarks/_pii_faker_set.py writes it; Faker is not needed here).
Card numbers are the networks' published test numbers where one exists, else a prefix padded with
zeros and its Luhn digit (python-stdnum), since no published test number exists for it.
"""
from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from stdnum import luhn

from pipelines.curation import pii_phone
from pipelines.curation.pii import PII_TYPES, pii_spans, redact
from pipelines.curation.pii_checks import card_network, card_ok, iban_ok, ipv6_ok

REPO = Path(__file__).resolve().parent.parent

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nq2Xh\n-----END RSA PRIVATE KEY-----"


@pytest.mark.parametrize("kind, text, expected", [
    ("email", "mail jane.doe+x@mail.example.co.uk now", "mail <EMAIL> now"),
    ("phone", "call (814) 360 8593 today", "call <PHONE> today"),
    ("phone", "call +1-212-456-7890.", "call <PHONE>."),
    ("phone", "ring +44 20 7946 0958", "ring <PHONE>"),
    ("ipv4", "host 192.168.0.12.", "host <IP_ADDRESS>."),
    ("ipv4", "from 123.45.67.98 at noon", "from <IP_ADDRESS> at noon"),   # almost counting is an address
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
    # Phone look-alikes on the web sample (benchmarks/pii_eval.py) and the rules that spare them:
    "Retrieved 2014-03-27.", "08.04.2015 12:46 1Password", "Costello, Colin (2017-10-20).",  # dates
    "the last four years (2015-2018)",  # year range
    "75 - 0.4756(14) 75 - 0.5244(14) D", "stddev 3.0822070014844882",  # decimals
    "<<1800-1170=630>>630 stitches", "He paid 2400-1100-700=<<2400-1100-700=600>>",  # arithmetic
    "ISBN 0-521-53927-7.", "ISBN 978-0-306-40615-7", "see 978-0-306-40615-7",  # ISBNs
    "PMID 21187404.", "PMC 2827536.", "doi:10.1016/0962-6298(93)90012-V.", "Bug 1681331 - Fixed",
    "JSTOR 2676011", "order no. 864842913",  # labelled identifiers
    "ts 1605589001 and 1382694045000",  # Unix times (valid Brazilian / Indian numbers otherwise)
    "? 22 23 24 25 C", "meet? 382 397 406 447 B", "television last weekend? 100 120 150 180 D",  # lists
    "加QQ拉你进群：215138693", "牛 300 215 65-68 鸡 100 105 66-69 蛇",  # a QQ id, a lottery table
    "Denmark 12 90 40 47", "Poland 786 627 314",  # digit groups without a phone word
    # Issue 20, second pass: what the contact-phrase, entry and dashed rules must still spare.
    "pages 300-1200", "in 150-2000 words",  # ranges of round numbers, not 3-4 dashed locals
    "Population: 786 627 314", "Options: 22 23 24 25",  # after a label: a figure, a list
    "the total: 786 627 314",  # a label that is not capitalised words
    "sales reach 2500000 on 12 May", "revenue reached 41647742 at year end",  # "reach" without "at" before
    "connect to (123.45.67.89, 80)", "host 12.34.56.78 in the example",   # placeholder addresses counting 1, 2, 3, ...
])
def test_look_alikes_are_left_alone(text):
    assert redact(text, PII_TYPES)[0] == text


@pytest.mark.parametrize("text", ["string (123.45.67.89)", "x = 1234567890", "call 555-1234"])
def test_phone_rules_alone_spare_look_alikes(text):
    """Without the IP and card types in front, the phone rules themselves spare these."""
    assert redact(text, ["phone"]) == (text, {"phone": 0})


@pytest.mark.parametrize("text, expected", [
    # National formats without a country code (issue 20's examples), +CC, extensions.
    ("call 07700 900 123 now", "call <PHONE> now"),  # UK mobile, trunk 0
    ("tél. 01.23.45.67.89", "tél. <PHONE>"),  # France, dots
    ("ligue (11) 555-019", "ligue <PHONE>"),  # area code in parentheses
    ("bel 0470 12 34 56", "bel <PHONE>"),  # Belgium mobile
    ("555-201-3344x1234 ext", "<PHONE> ext"),  # North American dashes, extension
    ("948-337-8876 x232", "<PHONE>"),
    ("1-800-555-0199", "<PHONE>"),
    ("+1 (212) 456-7890", "<PHONE>"),
    ("+49 (0) 9141 777631", "<PHONE>"), ("+44(0)113 4960365", "<PHONE>"),  # (0) trunk marker
    ("0044 20 7946 0958", "<PHONE>"), ("00852-27100021", "<PHONE>"),  # 00 international prefix
    ("+54 9 3240 7836", "<PHONE>"),  # a digit short for Argentina: the +CC fallback
    ("8 812 415 86 83", "<PHONE>"), ("8 (066) 907-43-91", "<PHONE>"),  # Russia, trunk 8
    ("13 1820-9821", "<PHONE>"), ("34/514 3686", "<PHONE>"),  # Brazil, Hungary
    ("0-2657-1719", "<PHONE>"),  # Thailand
    ("(04277) 32644 158", "<PHONE>"), ("05461/57984645", "<PHONE>"),  # one number, one placeholder
    ("电话：021-54098575  54098577", "电话：<PHONE>  <PHONE>"),  # real page; a phone word before the bare one
    ("监督电话：13611778776 E-mail", "监督电话：<PHONE> E-mail"),
    ("聯絡電話：03-584-7231\u3000 行動: 0937-141993", "聯絡電話：<PHONE>\u3000 行動: <PHONE>"),
    ("Belt u ons via 0900-Hovenier (0900 4683643)!", "Belt u ons via 0900-Hovenier (<PHONE>)!"),
    ("Telefon 98 32 78 38", "Telefon <PHONE>"), ("Tel: 786 627 314", "Tel: <PHONE>"),  # after a phone word
    ("Phone No.: 0123 456 7890", "Phone No.: <PHONE>"),
    ("13611778776", "<PHONE>"), ("6114980364", "<PHONE>"),  # bare, 10+ digits, valid for a region
    ("021-1234567 021-7654321", "<PHONE> <PHONE>"),  # two numbers in one run
    # Issue 20, second pass (made-up numbers in the shapes the Faker set's misses had):
    ("Reach Anne Berg at 41234567 after 6 pm.", "Reach Anne Berg at <PHONE> after 6 pm."),  # contact phrase
    ("call us on 912 34 567", "call us on <PHONE>"), ("contact the office at 601 234 567", "contact the office at <PHONE>"),
    ("Hansen: 91234567", "Hansen: <PHONE>"), ("Prof. Lars Mikkelsen — 2123 4567", "Prof. Lars Mikkelsen — <PHONE>"),
    ("Kowalski: 601-234-567", "Kowalski: <PHONE>"),  # entry label, written as a region writes phones
    ("53-1234-5678", "<PHONE>"), ("880-12-34", "<PHONE>"), ("151-2345", "<PHONE>"),  # dashed groups
    ("+89(4)3175550123", "<PHONE>"),  # + and an area code in parentheses, unknown country code
])
def test_phone_formats(text, expected):
    out, counts = redact(text, PII_TYPES)
    assert out == expected
    assert counts["phone"] == expected.count("<PHONE>")


def test_phone_regions_are_configurable():
    """National numbers need a region: a bare Chinese mobile is valid for CN, not for US."""
    assert redact("13611778776", ["phone"], phone_regions=["CN"])[0] == "<PHONE>"
    assert redact("13611778776", ["phone"], phone_regions=["US"])[0] == "13611778776"
    assert redact("+33 1 23 45 67 89", ["phone"], phone_regions=["US"])[0] == "<PHONE>"  # +CC: any region
    with pytest.raises(ValueError, match="XX"):
        redact("0470 12 34 56", ["phone"], phone_regions=["BE", "XX"])


def test_prefilter_skips_text_without_digit_runs(monkeypatch):
    """Text without a run of 7+ digits never reaches the matcher."""
    def fail(*args, **kwargs):
        raise AssertionError("PhoneNumberMatcher called")

    monkeypatch.setattr(pii_phone, "PhoneNumberMatcher", fail)
    pii_phone._matches.cache_clear()
    text = "Born in 1983, room 12-34, version 3.12.1, 250 km, no digits worth a look. " * 50
    assert redact(text, PII_TYPES)[0] == text


def _card(prefix: str, length: int) -> str:
    body = prefix + "0" * (length - len(prefix) - 1)
    return body + luhn.calc_check_digit(body)


CARDS = [  # network, number: published test numbers (Stripe, Adyen, PayPal docs) or _card()
    ("visa", "4111111111111111"), ("visa", "4222222222222"), ("visa", _card("4", 19)),
    ("mastercard", "5555555555554444"), ("mastercard", "2223003122003222"), ("mastercard", _card("2720", 16)),
    ("amex", "378282246310005"), ("amex", "371449635398431"),
    ("discover", "6011111111111117"), ("discover", _card("644", 16)), ("discover", _card("65", 19)),
    ("diners", "30569309025904"), ("diners", "36227206271667"), ("diners", _card("3095", 16)),
    ("jcb", "3530111333300000"), ("jcb", "3566002020360505"), ("jcb", _card("3589", 19)),
    ("jcb15", _card("1800", 15)), ("jcb15", _card("2131", 15)),
    ("maestro", "6759649826438453"), ("maestro", _card("5018", 12)), ("maestro", _card("6304", 19)),
    ("maestro", _card("5893", 13)), ("unionpay", "6205500000000000004"), ("unionpay", _card("81", 17)),
    ("rupay", _card("508", 16)), ("rupay", _card("60", 16)), ("mir", _card("2200", 16)),
]


@pytest.mark.parametrize("network, number", CARDS)
def test_every_card_network(network, number):
    assert card_network(number) == network
    groups = " ".join(number[i:i + 4] for i in range(0, len(number), 4))
    for printed in (number, groups, groups.replace(" ", "-")):
        out, counts = redact(f"card {printed}, thanks", PII_TYPES)
        assert out == "card <CREDIT_CARD>, thanks" and counts["credit_card"] == 1, printed


@pytest.mark.parametrize("printed", ["3782 822463 10005", "3056-930902-5904"])  # Amex 4-6-5, Diners 4-6-4
def test_card_groupings(printed):
    assert redact(f"paid with {printed}.", PII_TYPES)[0] == "paid with <CREDIT_CARD>."


@pytest.mark.parametrize("text", [
    "41 1111 1111 1111 11",  # not printed in card groups
    "4111 1111 1111 1112",  # Luhn digit wrong
    _card("1234", 16), _card("7", 16), _card("9", 16),  # no network's range
    _card("4", 14), _card("34", 16), _card("1800", 16),  # a network's prefix, not its length
])
def test_card_look_alikes(text):
    assert redact(f"n {text} n", ["credit_card"])[1]["credit_card"] == 0


def test_card_trailing_digits_are_trimmed():
    assert redact("4111 1111 1111 1111 123 apples", PII_TYPES)[0] == "<CREDIT_CARD> 123 apples"
    assert redact("call +57 601 234 5678", PII_TYPES)[0] == "call <PHONE>"  # a +CC phone, not a Maestro


@pytest.mark.parametrize("text, expected", [
    ("iban gb82 west 1234 5698 7654 32 please", "iban <IBAN> please"),  # lower case
    ("IBAN Gb82West12345698765432.", "IBAN <IBAN>."),  # mixed case, no spaces
    ("BE68 5390 0754 7034 from the bank", "<IBAN> from the bank"),  # a word after it is not taken
    ("NO9386011117947 and CH9300762011623852957", "<IBAN> and <IBAN>"),  # shortest and a 21-char one
])
def test_iban_formats(text, expected):
    assert redact(text, PII_TYPES)[0] == expected


@pytest.mark.parametrize("text", [
    "GB82 WEST 1234 5698 7654 3",  # one character short for GB (country length)
    "GB82 WEST 1234 5698 7654 322",  # one too many
    "XX82 WEST 1234 5698 7654 32",  # no such country
    "de89 3704 0044 0532 0130 01",  # mod-97 fails
])
def test_iban_look_alikes(text):
    assert redact(text, ["iban"])[1]["iban"] == 0


def test_email_local_part_is_ascii():
    assert redact("网站地图fyzw88@126.com 郑重声明", PII_TYPES)[0] == "网站地图<EMAIL> 郑重声明"


def test_checksums():
    assert card_ok("4111 1111 1111 1111") and not card_ok("4111 1111 1111 1112")
    assert not card_ok("4111-1111 1111-1111")  # mixed separators
    assert iban_ok("FR14 2004 1010 0505 0001 3M02 606") and not iban_ok("FR14 2004 1010 0505 0001 3M02 607")
    assert iban_ok("fr14 2004 1010 0505 0001 3m02 606")
    assert ipv6_ok("::ffff:198.18.0.1") and not ipv6_ok("1::2") and not ipv6_ok("12:30:45")


def test_only_chosen_types():
    text = "a@b.org 514-14-8905"
    assert redact(text, ["ssn"]) == ("a@b.org <SSN>", {"ssn": 1})


def test_counts_and_spans_per_type():
    text = "Tel. 07700 900 123 or +33 1 23 45 67 89, mail a@b.org, card 4111 1111 1111 1111"
    out, counts = redact(text, PII_TYPES)
    assert out == "Tel. <PHONE> or <PHONE>, mail <EMAIL>, card <CREDIT_CARD>"
    assert {k: n for k, n in counts.items() if n} == {"phone": 2, "email": 1, "credit_card": 1}
    assert [(k, text[s:e]) for k, s, e in pii_spans(text, PII_TYPES)] == [
        ("phone", "07700 900 123"), ("phone", "+33 1 23 45 67 89"), ("email", "a@b.org"),
        ("credit_card", "4111 1111 1111 1111")]


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


def test_recall_per_type_on_the_faker_set():
    """benchmarks/pii_faker_set.txt (2,120 Faker sentences, 38 locales), measured: recall 1.0 for
    emails, IPs, cards, IBANs and SSNs, phones 0.986 on 2026-12-04 (0.961 before the contact-phrase,
    entry and dashed rules; see benchmarks/RESULTS.md); precision 1.0 for every type despite the dates, prices, ISBNs and
    order numbers beside the values."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from pii_eval import gold_lines, gold_scores

    g = gold_scores(gold_lines("faker"))
    recall = {k: g["found"][k] / (g["found"][k] + g["fn"][k]) for k in g["found"]}
    precision = {k: g["hit"][k] / (g["hit"][k] + g["fp"][k]) for k in g["hit"]}
    assert set(recall) == {"email", "phone", "ip", "credit_card", "iban", "ssn"}
    assert all(r >= 0.98 for k, r in recall.items() if k != "phone"), recall
    assert recall["phone"] >= 0.98 and g["phone"]["with a phone word"]["found"] == g["phone"]["with a phone word"]["n"]
    assert all(p >= 0.99 for p in precision.values()), precision


def test_phone_regions_come_from_the_config():
    """curate.pii_phone_regions reaches the PII step; a bad region is a config error naming it."""
    import pyarrow as pa

    from pipelines.curation import CurateConfig
    from pipelines.curation.steps import Pii

    text = "Ring 07700 900123 for the office."   # a UK mobile in national format
    table = pa.table({"id": ["a"], "status": ["kept"], "text": [text]})
    assert "<PHONE>" in Pii(CurateConfig(pii_phone_regions=["GB"]))(table)["text"][0].as_py()
    assert "<PHONE>" not in Pii(CurateConfig(pii_phone_regions=["US"]))(table)["text"][0].as_py()
    with pytest.raises(ValueError, match="pii_phone_regions: unknown region"):
        CurateConfig(pii_phone_regions=["XX"])
