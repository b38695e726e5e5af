"""Generate the labelled PII evaluation set benchmarks/pii_faker_set.txt with Faker (seeded, so the
file is reproducible): one sentence a line, gold values in inline tags as in NeMo-Curator's test data
(`<phone_number>...</phone_number>`, `<credit_card_number>`, `<iban_code>`, `<email>`,
`<ip_address>`, `<ssn>`), values drawn from 38 Faker locales.

    pip install Faker==40.63.0        # the dev extra; other Faker versions draw other values
    python benchmarks/_pii_faker_set.py            # rewrites benchmarks/pii_faker_set.txt
    python benchmarks/_pii_faker_set.py --check    # exits 1 when the committed file differs

What is drawn, per value (counts in N below):
- phones: `phone_number()` of the sentence's locale exactly as Faker formats it (national formats
  without a country code, +CC, (area) groups, extensions like x1234); Faker fills the digits at
  random, so many are not numbers any carrier assigned, yet shaped as that country writes phones.
- cards: `credit_card_number()` for every network Faker knows, plus card types added here through
  Faker's own CreditCard records for what it lacks (UnionPay 62, RuPay 60/65/81/82/508, Mir
  2200-2204, Maestro 13-19 digits, JCB 17-19, Discover 644-649 / 17-19); printed plain, in groups of
  4 split by spaces or dashes, or the Amex / Diners 4-6-5 / 4-6-4 grouping.
  Faker's Maestro prefix 0604 names no issuer (ISO/IEC 7812: a card number's first digit is never 0):
  such draws are drawn again.
- IBANs: `iban()` of one of 22 locales of IBAN countries with Faker bank data (IBAN_LOCALES),
  printed plain, in groups of 4, or in lower case.
- emails (`email`, `free_email`, `company_email`), IPs (`ipv4_public`, `ipv4_private`, `ipv6`, the
  latter also compressed), US SSNs (`ssn()` of en_US; no other country has a US SSN).
Sentences: one of several carriers per type, some naming the kind of value ("Tel.", "IBAN:") in
the locale's language and some not (a name, a dash, the value), and half of them with a distractor
that is not PII (a date, a price, an order or ISBN number, a time, a version, a percentage).
"""
from __future__ import annotations

import argparse
import datetime
import ipaddress
import random
import sys
from pathlib import Path

from faker import Faker
from faker.providers.credit_card import CreditCard
from faker.providers.credit_card import Provider as CardProvider

OUT = Path(__file__).resolve().parent / "pii_faker_set.txt"
SEED = 20261203
_NOW, _LATER = datetime.datetime(2026, 12, 3), datetime.datetime(2031, 12, 3)  # Faker dates default to now
LOCALES = ["en_US", "en_GB", "en_CA", "en_AU", "en_IN", "en_NZ", "de_DE", "de_AT", "de_CH", "fr_FR",
           "fr_CH", "nl_NL", "nl_BE", "it_IT", "es_ES", "es_MX", "es_AR", "es_CO", "pt_BR", "pt_PT",
           "pl_PL", "cs_CZ", "ru_RU", "uk_UA", "tr_TR", "sv_SE", "da_DK", "no_NO", "fi_FI", "el_GR",
           "hu_HU", "ro_RO", "ja_JP", "zh_CN", "zh_TW", "ko_KR", "th_TH", "id_ID"]
# IBANs come from the locales whose country uses IBANs and that have their own Faker bank data;
# elsewhere Faker's iban() makes one up (AR, CO, TH, IN, CN have no IBAN; its fallback writes GB
# IBANs one character short) that no IBAN validator accepts.
IBAN_LOCALES = ["en_GB", "de_DE", "de_AT", "de_CH", "fr_FR", "fr_CH", "nl_NL", "nl_BE", "it_IT", "es_ES",
                "pt_PT", "pt_BR", "pl_PL", "cs_CZ", "ru_RU", "uk_UA", "tr_TR", "da_DK", "no_NO", "fi_FI",
                "el_GR", "ro_RO"]
N = {"phone": 900, "card": 420, "iban": 240, "email": 220, "ip": 220, "ssn": 120}

# Card types Faker lacks, as Faker CreditCard records (name, prefixes, length); '#' is any digit.
_MAESTRO = ["5018", "5020", "5038", "5893", "6304", "6759", "6761", "6762", "6763", "56##", "57##", "58##"]
EXTRA_CARDS = {
    "unionpay16": CreditCard("UnionPay", ["62"], 16), "unionpay19": CreditCard("UnionPay", ["62"], 19),
    "rupay": CreditCard("RuPay", ["60", "65", "81", "82", "508"], 16),
    "mir": CreditCard("Mir", ["2200", "2201", "2202", "2203", "2204"], 16),
    **{f"maestro{n}": CreditCard("Maestro", _MAESTRO, n) for n in (13, 15, 16, 18, 19)},
    "jcb19": CreditCard("JCB", ["35"], 19), "discover19": CreditCard("Discover", ["644", "649", "65"], 19),
    "mastercard2": CreditCard("Mastercard", ["2221", "2500", "2720"], 16),
}
CARD_TYPES = ["amex", "diners", "discover", "jcb15", "jcb16", "maestro", "mastercard", "visa13", "visa16",
              "visa19", *EXTRA_CARDS]

# The word for the kind of value, by language (the first part of the locale).
PHONE_WORDS = {"en": ["Phone", "Tel.", "Mobile", "call me on", "Fax"], "de": ["Telefon", "Tel.", "Handy"],
               "fr": ["Téléphone", "Tél.", "Portable"], "nl": ["Telefoon", "Tel.", "Mobiel"],
               "it": ["Telefono", "Tel.", "Cellulare"], "es": ["Teléfono", "Tel.", "Móvil"],
               "pt": ["Telefone", "Tel.", "Celular"], "pl": ["Telefon", "Tel."], "cs": ["Telefon", "Tel."],
               "ru": ["Телефон", "Тел."], "uk": ["Телефон", "Тел."], "tr": ["Telefon", "Tel."],
               "sv": ["Telefon", "Tel."], "da": ["Telefon", "Tlf."], "no": ["Telefon", "Tlf."],
               "fi": ["Puhelin", "Puh."], "el": ["Τηλέφωνο", "Τηλ."], "hu": ["Telefon", "Tel."],
               "ro": ["Telefon", "Tel."], "ja": ["電話", "TEL"], "zh": ["电话", "手机"], "ko": ["전화", "휴대폰"],
               "th": ["โทร"], "id": ["Telepon", "HP"]}
DISTRACTORS = [
    lambda f, r: f"on {f.date(end_datetime=_NOW)}", lambda f, r: f"at {f.time(end_datetime=_NOW)}",
    lambda f, r: f"for {f.pricetag()}",
    lambda f, r: f"order no. {r.randint(10 ** 6, 10 ** 9)}", lambda f, r: f"ISBN {f.isbn13()}",
    lambda f, r: f"version {r.randint(1, 9)}.{r.randint(0, 20)}.{r.randint(0, 9)}",
    lambda f, r: f"{r.randint(1, 99)}.{r.randint(0, 9)}%", lambda f, r: f"in {r.randint(1950, 2030)}",
    lambda f, r: f"{r.randint(2, 400):,} km", lambda f, r: f"postcode {r.randint(1000, 99999)}",
]


def _grouped(digits: str, rnd: random.Random) -> str:
    """A card number as people print it: plain, 4-groups with spaces or dashes, Amex/Diners style."""
    style = rnd.choice(["plain", "space", "dash", "space", "dash"])
    if style == "plain":
        return digits
    sep = " " if style == "space" else "-"
    if len(digits) in (14, 15) and rnd.random() < 0.7:  # Amex 4-6-5, Diners 4-6-4
        return sep.join([digits[:4], digits[4:10], digits[10:]])
    return sep.join(digits[i:i + 4] for i in range(0, len(digits), 4))


def _card(f: Faker, rnd: random.Random) -> str:
    kind = rnd.choice(CARD_TYPES)
    while True:
        number = f.credit_card_number(kind)
        if not number.startswith("0"):
            return _grouped(number, rnd)


def _iban(f: Faker, rnd: random.Random) -> str:
    iban = f.iban()
    style = rnd.choice(["plain", "groups", "groups", "lower"])
    if style != "plain":
        iban = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
    return iban.lower() if style == "lower" else iban


def _ip(f: Faker, rnd: random.Random) -> str:
    kind = rnd.choice(["public", "public", "private", "v6", "v6short"])
    if kind == "v6short":
        return ipaddress.IPv6Address(f.ipv6()).compressed
    return {"public": f.ipv4_public, "private": f.ipv4_private, "v6": f.ipv6}[kind]()


def _sentence(kind: str, value: str, f: Faker, lang: str, rnd: random.Random) -> str:
    name = f.name()
    tag = {"phone": "phone_number", "card": "credit_card_number", "iban": "iban_code", "email": "email",
           "ip": "ip_address", "ssn": "ssn"}[kind]
    v = f"<{tag}>{value}</{tag}>"
    word = rnd.choice(PHONE_WORDS.get(lang, PHONE_WORDS["en"])) if kind == "phone" else None
    brand, expiry = rnd.choice(["Visa", "card", "credit card"]), f.credit_card_expire(start=_NOW, end=_LATER)
    named = {"phone": [f"{word}: {v}", f"{name}, {word} {v}", f"You can reach {name} ({word}) at {v}."],
             "card": [f"Card number: {v}", f"Please charge {v} for the order.", f"My {brand} is {v}, expiry {expiry}."],
             "iban": [f"IBAN: {v}", f"Please transfer the deposit to IBAN {v}."],
             "email": [f"Email: {v}", f"Write to {name} at {v}."],
             "ip": [f"Login from IP address {v}.", f"ip={v}"],
             "ssn": [f"SSN: {v}", f"My social security number is {v}."]}[kind]
    bare = {"phone": [f"{name} — {v}", f"{v}", f"Reach {name} at {v} after 6 pm.", f"{f.last_name()}: {v}"],
            "card": [f"{name} — {v}", f"{v}"],
            "iban": [f"{name}, {v}", f"{v}"],
            "email": [f"{name} <{v}>", f"{v}", f"cc {v}"],
            "ip": [f"{v}", f"ssh root@{v}", f"connection from {v} refused"],
            "ssn": [f"{name} {v}", f"{v}"]}[kind]
    text = rnd.choice(named if rnd.random() < 0.5 else bare)
    if rnd.random() < 0.5:
        text = f"{text} ({rnd.choice(DISTRACTORS)(f, rnd)})"
    return text


def generate() -> str:
    rnd = random.Random(SEED)
    fakers = {}
    for i, loc in enumerate(LOCALES):
        f = Faker(loc)
        f.seed_instance(SEED + i)
        f.add_provider(type("Cards", (CardProvider,), {"credit_card_types": {**CardProvider.credit_card_types,
                                                                             **EXTRA_CARDS}}))
        fakers[loc] = f
    lines = []
    for kind, n in N.items():
        for k in range(n):
            locales = {"ssn": ["en_US"], "iban": IBAN_LOCALES}.get(kind, LOCALES)
            loc = locales[k % len(locales)]
            f = fakers[loc]
            value = {"phone": lambda: f.phone_number(), "card": lambda: _card(f, rnd),
                     "iban": lambda: _iban(f, rnd), "ssn": lambda: f.ssn(),
                     "email": lambda: rnd.choice([f.email, f.free_email, f.company_email])(),
                     "ip": lambda: _ip(f, rnd)}[kind]()
            lines.append(f"{loc}\t{_sentence(kind, value, f, loc.split('_')[0], rnd)}")
    return "".join(line.replace("\n", " ") + "\n" for line in lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")
    args = ap.parse_args()
    text = generate()
    if args.check:
        same = OUT.exists() and OUT.read_text(encoding="utf-8") == text
        print("same as committed" if same else "differs from the committed file")
        sys.exit(0 if same else 1)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} ({len(text.splitlines())} sentences, {len(text.encode()):,} bytes)")


if __name__ == "__main__":
    main()
