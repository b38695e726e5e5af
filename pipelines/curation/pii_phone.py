"""Phone numbers for the PII step: phonenumbers' PhoneNumberMatcher (Google libphonenumber's rules)
over a list of regions, behind a cheap prefilter and the look-alike rules web text needs.

    from pipelines.curation.pii_phone import phone_spans
    phone_spans("Tel. 07700 900 123, fax +33 1 23 45 67 89")   # [(5, 18), (24, 41)]

How a number is found:
1. Prefilter (`_RUN`, one regular expression): runs of digits joined by single separators
   (space, . - /, an area code in parentheses), with an optional + and extension (x12, ext. 12),
   holding 7 to 32 digits. A document without such a run costs that one scan and nothing else.
2. Look-alike rules, region-free (each pinned in tests/test_curation_pii.py): dates, year ranges,
   decimal fractions, IPv4 shapes, Unix times, arithmetic, North America's fictional 555-xxxx,
   identifiers (a label such as ISBN, PMID, doi, order no. right before the run; an unlabelled
   ISBN-13 checked with python-stdnum).
3. Shape and context. A run is *phone-shaped* when it is written as phones are and other numbers
   rarely are: +CC or 00CC, an area code in parentheses, a leading trunk 0 group (07700 900 123,
   01.23.45.67.89), trunk 8 (Russia), Brazil's 11 91234-5678, Hungary's 1/234-5678, or North
   American 555-201-3344 with dashes or dots, or dashed groups (53-1010-3484, 880-54-94, 151-2298;
   not a range of round numbers such as 300-1200). Other runs (bare digits, groups split by spaces
   alone) are numbers in lists and tables as often as phones: they count only after a phone word
   (tel, phone, Telefon, 电话, ... in CONTEXT_WORDS) or an English contact phrase ("reach Anne at",
   "call us on"), or after a directory-entry label (capitalised words and ":" or a dash: "Hansen:",
   "Dawid Kwinta —") when written exactly as a region writes its valid numbers (EXACT_GROUPING)
   and not as a thousands-grouped figure or a list of 1-2 digit numbers, or, bare with 10 or more digits, when valid
   for a region (13611778776, a Chinese mobile). Split by spaces with no phone word, they never
   count: `22 23 24 25` and `786 627 314` are answer lists far more often than Danish or Polish
   phones.
4. PhoneNumberMatcher over each region in turn until its matches cover every digit of the run
   (a list of numbers is not one phone): leniency LENIENCY[evidence], POSSIBLE (a length the
   region's plan allows) for phone-shaped runs and runs after a phone word, VALID (an assigned
   range) for bare runs with neither. Chosen by measurement: benchmarks/pii_eval.py prints phone
   recall and web precision for each leniency; EXACT_GROUPING, one number covering the run, after
   an entry label. A +CC run with a country code phonenumbers knows
   and 8 to 15 digits counts even when the matcher rejects its length, and so does + with an area
   code in parentheses (+89(4)3178713309) whatever the country code: the + is evidence enough.
"""
from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from phonenumbers import Leniency, PhoneNumberMatcher
from stdnum import isbn

# Default regions: the countries behind most of the web's text (Common Crawl's top languages) and
# the most populous ones, about 60; any list of phonenumbers.SUPPORTED_REGIONS may be passed.
PHONE_REGIONS = tuple("""US GB CA AU NZ IE IN PK BD NG ZA KE EG PH SG MY ID TH VN CN HK TW JP KR
    DE AT CH FR BE NL LU ES PT IT PL CZ SK HU RO BG HR SI RS GR TR RU UA BY KZ SE NO DK FI EE LV LT
    IL AE SA IR BR MX AR CO CL PE VE""".split())

# Words that name a phone number, in the languages of the default regions, matched case-folded
# as whole words in the 30 characters before a run (scripts without spaces: anywhere there).
CONTEXT_WORDS = """phone telephone tel mobile mob cell cellphone call fax whatsapp hotline contact
    telefon telefonnummer handy téléphone tél portable teléfono móvil celular llame telefono
    cellulare telefoon mobiel telefone telefonu телефон тел моб звоните факс телефону puhelin puh
    τηλέφωνο τηλ κινητό telepon ponsel điện thoại đt sđt tlf mobil gsm""".split()
CONTEXT_WORDS_UNSPACED = "电话 電話 手机 手機 联系 聯絡 行動 โทร โทรศัพท์ 전화 휴대폰 携帯".split()
_CONTEXT = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, sorted(CONTEXT_WORDS, key=len, reverse=True)))
                      + r")(?!\w)|" + "|".join(map(re.escape, CONTEXT_WORDS_UNSPACED)), re.I)

_EXT = r"(?:\s?(?:x|ext\.?|#)\s?\d{1,6})"
# Digit groups joined by one separator, or by an area code in parentheses: +44 (0)20 7946 0958,
# (0161) 496-0066, 01.23.45.67.89. Not inside a word, a number, a decimal or a range; not the
# local part of an email address.
_AREA = r"\(\+?\d{1,5}\)"
_RUN = re.compile(rf"(?<![\w+.,/\-])(?:\+\s?)?(?:{_AREA}[ .\-/]?)?\d+"
                  rf"(?:(?:[ .\-/\u00a0]|[ .\-]?{_AREA}[ .\-/]?)\d+)*{_EXT}?(?![\w@])(?![.,]\d)(?!-\d)")

# Phone-shaped (see the module docstring); tested on the run with its extension removed.
_PLUS = re.compile(r"\+\d|00[1-9]")
_AREA_PARENS = re.compile(_AREA)
_TRUNK_GROUP = re.compile(r"\(?0[1-9]\d{0,4}\)?[ .\-/]|0-\d")
# Russian, Kazakh and Belarusian national format, trunk prefix 8: 8 812 415 86 83, 8 (066) 907-43-91.
_TRUNK_8 = re.compile(r"8[ \-]\(?\d{3}\)?[ \-]\d{3}(?:[ \-]\d{2}[ \-]\d{2}|[ \-]\d{4})")
# Brazil (11 91234-5678) and Hungary (1/234-5678, 34/514 3686): area code, then a dash or slash.
_AREA_DASH = re.compile(r"\d{2} \d{4,5}-\d{4}|\d{1,2}/\d{3}[ \-]?\d{3,4}")
_NANP = re.compile(r"(?:\+?1[.\-])?\d{3}([.\-])\d{3}\1\d{4}")
# Dashed local and national formats: Japan without its trunk 0 (53-1010-3484), 2-3-4 and 4-3-4
# groups, Russia and Ukraine's 880-54-94, the 7-digit local 151-2298 (not a range of round numbers,
# 300-1200, see _look_alike).
_DASHED = re.compile(r"\d{2,4}-\d{3,4}-\d{4}|\d{3}-\d{2}-\d{2}|\d{3}-\d{4}")
_ROUND_RANGE = re.compile(r"(\d{3})-(\d{4})")

_DATE = re.compile(r"(?:\d{4}([-./])\d{1,2}\1\d{1,2}|\d{1,2}([-./])\d{1,2}\2(?:\d{4}|\d{2}))(?:[ T]\d{1,2})?")
_YEAR_RANGE = re.compile(r"(?:1[6-9]|20)\d\d ?[-/] ?(?:1[6-9]|20)\d\d")
_FICTIONAL = re.compile(r"555[ .\-]\d{4}")  # North America's fictional exchange, without area code
_UNIX_TIME = re.compile(r"1\d{9}|1\d{12}")  # seconds / milliseconds since 1970 (2001-2033)
_IPV4_SHAPE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")  # 123.45.67.89 (the IP types come first)
_ARITHMETIC_BEFORE = re.compile(r"(?:[=+*×÷^]|<<)\s*$")  # GSM8K's <<1800-1170=630>>, x = 1234567890
_ARITHMETIC_AFTER = re.compile(r"\s*[=+*×÷^]")
# Identifiers whose numbers are not phones, when they precede a run.
_ID_WORDS = re.compile(r"(?:\b(?:isbn(?:-1[03])?|issn|doi|pmid|pmc|arxiv|jstor|oclc|bibcode|zbl|mr|lccn|"
                       r"bug|issue|patent|invoice|order|ticket|case|ref|id)\b\.?(?:\s*no\b\.?)?|#)\s*[:=]?\s*$", re.I)
_EXT_END = re.compile(rf"{_EXT}$")
# An English contact phrase right before a run: "reach Anne at", "call us on", "contact the office at".
_CONTACT = re.compile(r"(?<!\w)(?:reach|call|ring|contact|dial|text)(?:\s+[^\s\d]+){0,5}?\s+(?:at|on)\s*$", re.I)
# A directory entry: up to four capitalised words (a name; any cased script), then ":" or a dash,
# right before the run ("Hansen: 73 56 15 20", "Dawid Kwinta — 786 627 314").
_ENTRY = re.compile(r"(?:^|(?<=[\s(]))((?:[^\W\d_][\w'.\-]*\s+){0,3}[^\W\d_][\w'\-]*)\s*(?::|\s[—–])\s*$")


# Leniency by the evidence a run carries (module docstring, steps 3 and 4), and the fewest digits
# of a bare run (no separators) without shape or phone word; such runs with separators never count.
LENIENCY = {"shaped": Leniency.POSSIBLE, "context": Leniency.POSSIBLE, "entry": Leniency.EXACT_GROUPING,
            "plain": Leniency.VALID}
PLAIN_MIN_DIGITS = 10
MAX_RUN_DIGITS = 32  # two phones in one run (021-1234567 021-7654321); longer runs are tables


def phone_spans(text: str, regions=PHONE_REGIONS) -> list[tuple[int, int]]:
    """(start, end) of every phone number in `text`, in order."""
    spans = []
    regions = _checked(tuple(regions))
    for m in _RUN.finditer(text):
        run = m.group(0)
        main = _EXT_END.sub("", run)
        n = sum(c.isdigit() for c in main)
        if not 7 <= n <= MAX_RUN_DIGITS:
            continue
        if _look_alike(text, m.start(), m.end(), main):
            continue
        if _phone_shaped(main):
            evidence = "shaped"
        elif (_CONTEXT.search(text, max(0, m.start() - 30), m.start())
              or _CONTACT.search(text, max(0, m.start() - 60), m.start())):
            evidence = "context"
        elif _entry(text, m.start()) and not _LIST_OR_FIGURE.fullmatch(main):
            evidence = "entry"
        elif n >= PLAIN_MIN_DIGITS and main.isdigit():
            evidence = "plain"
        else:
            continue
        for s, e in _matches(run, regions, LENIENCY[evidence], evidence == "shaped", evidence == "entry"):
            spans.append((m.start() + s, m.start() + e))
    return spans


@lru_cache(maxsize=64)
def _checked(regions: tuple[str, ...]) -> tuple[str, ...]:
    bad = [r for r in regions if r not in phonenumbers.SUPPORTED_REGIONS]
    if bad or not regions:
        raise ValueError(f"phone regions {bad or regions} are not phonenumbers.SUPPORTED_REGIONS codes")
    return regions


def _phone_shaped(main: str) -> bool:
    return bool(_PLUS.match(main) or _AREA_PARENS.search(main) or _TRUNK_GROUP.match(main)
                or _TRUNK_8.fullmatch(main) or _AREA_DASH.fullmatch(main)
                or _NANP.fullmatch(main) or _DASHED.fullmatch(main))


# After a label, digit groups that are far more often a figure or a list than a phone: thousands
# grouping (Population: 786 627 314) and groups of one or two digits (Options: 22 23 24 25).
_LIST_OR_FIGURE = re.compile(r"\d{1,3}(?: \d{3})+|\d{1,2}(?: \d{1,2})+")


def _entry(text: str, start: int) -> bool:
    """A name-shaped label (every word capitalised) and ":" or a dash right before `start`."""
    m = _ENTRY.search(text, max(0, start - 60), start)
    return bool(m) and all(w[0].isupper() for w in m.group(1).split())


def _look_alike(text: str, start: int, end: int, main: str) -> bool:
    """Region-free rules for numbers that are not phones (module docstring, step 2)."""
    if (_DATE.fullmatch(main) or _YEAR_RANGE.fullmatch(main) or _IPV4_SHAPE.fullmatch(main)
            or _FICTIONAL.fullmatch(main) or _UNIX_TIME.fullmatch(main) or main.startswith("0.")):
        return True
    r = _ROUND_RANGE.fullmatch(main)  # 300-1200, 150-2000: a range of round numbers
    if r and (int(r.group(1)) % 50 == 0 or int(r.group(2)) % 50 == 0):
        return True
    before = text[max(0, start - 16):start]
    if _ARITHMETIC_BEFORE.search(before) or _ARITHMETIC_AFTER.match(text, end, end + 3):
        return True
    if _ID_WORDS.search(before):
        return True
    # An unlabelled ISBN-13 (978-0-306-40615-7); a 10-digit ISBN needs its label, since one
    # dashed 10-digit phone in 11 passes the ISBN-10 checksum by chance.
    return main.startswith(("978", "979")) and isbn.is_valid(main)


@lru_cache(maxsize=4096)
def _matches(run: str, regions: tuple[str, ...], leniency, plus_ok: bool,
             whole: bool = False) -> tuple[tuple[int, int], ...]:
    """Matcher spans that together cover every digit of `run`, from the first region where they
    do; () when no region does. Cached: web pages repeat the same numbers (timestamps, ids).
    `plus_ok`: a +CC run the matcher rejects still counts when _known_country_code says so, or when
    an area code in parentheses follows the + (+89(4)3178713309). `whole`: one number must cover
    the run (a directory entry is one phone, not a list)."""
    digits = {i for i, c in enumerate(run) if c.isdigit()}
    for region in regions:
        found = [(m.start, m.end) for m in PhoneNumberMatcher(run, region, leniency)]
        if whole and found != [(0, len(run))]:
            continue
        if found and digits <= {i for s, e in found for i in range(s, e)}:
            # The matcher splits some national formats ((04277) 32644 158, 05461/57984645):
            # a piece too short to be a phone by itself means the run is one number.
            if any(sum(c.isdigit() for c in run[s:e]) < 7 for s, e in found):
                return ((found[0][0], found[-1][1]),)
            return tuple(found)
    if plus_ok and run.startswith("+") and (_known_country_code(run) or _plus_area(run)):
        return ((0, len(run)),)
    return ()


def _known_country_code(run: str) -> bool:
    digits = re.sub(r"\D", "", _EXT_END.sub("", run))
    return 8 <= len(digits) <= 15 and any(int(digits[:k]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE
                                          for k in (1, 2, 3))


def _plus_area(run: str) -> bool:
    """+, a country code, an area code in parentheses, 8 to 15 digits in all: written as an
    international number even where the country code is not one phonenumbers knows."""
    digits = re.sub(r"\D", "", _EXT_END.sub("", run))
    return bool(re.match(r"\+\s?\d{1,3}\s?\(\d{1,4}\)", run)) and 8 <= len(digits) <= 15
