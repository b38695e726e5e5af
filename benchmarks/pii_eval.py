"""PII redaction quality: precision and recall per type on labelled sentences, and precision on real
web text (whose matches were judged by hand, listed in WEB_JUDGED below).

    python benchmarks/pii_eval.py              # prints tables, writes the pii section of RESULTS.md
    python benchmarks/pii_eval.py --dump       # every match on the web sample, with context, to judge

Labelled data: ../shared/data/pii (NeMo-Curator's test sentences, gold tags such as <email>...</email>;
values synthetic). A predicted span counts as a true positive when it overlaps a gold span of the
same kind (ipv4 and ipv6 both count for <ip_address>); a prediction overlapping no gold span of its
kind is a false positive (including matches inside <address>, <name>, <birth_date> tags).
Real-text sample: the text trafilatura extracts from every HTML response in ../shared/data/warc
and every page in ../shared/data/html/readability, the CCNet jsonl documents in
../shared/data/jsonl, and number-heavy text where look-alikes abound: GSM8K and MMLU test items
(../shared/data/benchmarks) and the standard library's docstrings (versions, OIDs, example IPs).
No gold labels exist there, so each distinct match was judged by hand in context (a real
address / number / key of that kind = true, anything else = false); precision = true / all.
"""
from __future__ import annotations

import argparse
import csv
import glob
import gzip
import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipelines.curation.pii import PII_TYPES, pii_spans  # noqa: E402

DATA = REPO.parent / "shared" / "data"
GOLD_KIND = {"email": "email", "phone_number": "phone", "ip_address": "ip", "credit_card_number": "credit_card",
             "ssn": "ssn"}
_TAG = re.compile(r"<(/?)([a-z_]+)>")


def kind_of(pii_type: str) -> str:
    return "ip" if pii_type in ("ipv4", "ipv6") else pii_type


def parse_gold(line: str) -> tuple[str, list[tuple[str, int, int]]]:
    """Plain text and (tag, start, end) spans of a line with inline gold tags."""
    out, spans, open_at, pos = [], [], {}, 0
    for m in _TAG.finditer(line):
        out.append(line[pos:m.start()])
        offset = sum(map(len, out))
        if m.group(1):
            spans.append((m.group(2), open_at.pop(m.group(2)), offset))
        else:
            open_at[m.group(2)] = offset
        pos = m.end()
    out.append(line[pos:])
    return "".join(out), spans


def gold_scores() -> dict:
    tp, fp, fn = Counter(), Counter(), Counter()
    mistakes = []
    for path in sorted(glob.glob(str(DATA / "pii" / "*.txt"))):
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            text, gold = parse_gold(line)
            pred = [(kind_of(k), s, e) for k, s, e in pii_spans(text, PII_TYPES)]
            for kind, s, e in pred:
                hit = any(GOLD_KIND.get(g) == kind and s < ge and gs < e for g, gs, ge in gold)
                (tp if hit else fp)[kind] += 1
                if not hit:
                    mistakes.append(f"FP {kind}: {text[s:e]!r} in {text[:90]!r}")
            for g, gs, ge in gold:
                kind = GOLD_KIND.get(g)
                if kind and not any(k == kind and s < ge and gs < e for k, s, e in pred):
                    fn[kind] += 1
                    mistakes.append(f"FN {kind}: {text[gs:ge]!r}")
    return {"tp": tp, "fp": fp, "fn": fn, "mistakes": mistakes}


def web_texts() -> list[tuple[str, str]]:
    """(where, text) for the web sample described in the module docstring."""
    import trafilatura

    from pipelines.curation.readers import iter_file_rows

    out = []
    pages = [(r["url"], r["html"]) for f in sorted(glob.glob(str(DATA / "warc" / "*.warc.gz")))
             for r in iter_file_rows(f) if r["status"] == "kept" and r["html"]]
    pages += [(p, gzip.open(p).read()) for p in sorted(glob.glob(str(DATA / "html" / "readability" / "*.html.gz")))]
    for where, html in pages:
        text = trafilatura.extract(html, favor_precision=True, include_tables=True)
        if text:
            out.append((where, text))
    for path in sorted(glob.glob(str(DATA / "jsonl" / "cc_en_head-*.jsonl"))):
        for n, line in enumerate(open(path, encoding="utf-8")):
            rec = json.loads(line)
            out.append((rec.get("id") or f"{Path(path).name}:{n}", rec.get("text", "")))
    # Number-heavy real text, where look-alikes (prices, dates, versions, addresses) abound.
    for n, line in enumerate(open(DATA / "benchmarks" / "gsm8k" / "test.jsonl", encoding="utf-8")):
        rec = json.loads(line)
        out.append((f"gsm8k:{n}", rec["question"] + "\n" + rec["answer"]))
    for path in sorted(glob.glob(str(DATA / "benchmarks" / "mmlu" / "test" / "*.csv"))):
        with open(path, encoding="utf-8") as f:
            out.append((f"mmlu:{Path(path).stem}", "\n".join(" ".join(r) for r in csv.reader(f))))
    for mod in _stdlib_docs():
        text = "\n\n".join([mod["doc"]] + [f"{t} {sig}\n{doc}" for t, sig, doc in mod["sections"]])
        out.append((f"stdlib:{mod['module']}", text))
    return out


def _stdlib_docs() -> list[dict]:
    """Docstrings of the whole standard library (the demo corpus's source), in a child process."""
    proc = subprocess.run([sys.executable, "-I", str(REPO / "pipelines" / "curation" / "_stdlib_docs.py"), "all"],
                          capture_output=True, text=True, timeout=600)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


# Every distinct match on the web sample, judged by reading it in context (--dump): True = real
# PII of that kind, False = a false positive (what it really is in the comment).
# Judged 2026-11-26 on the output of --dump; a match not listed here is reported as unjudged.
_REAL_EMAILS = ["550502573@qq.com", "adblocking@iab.com", "bkuhn@ebb.org", "fdrake@acm.org", "fkooman@tuxed.net",
                "fyzw88@126.com", "gh@ghaering.de", "gward@python.net", "lkcl@samba.org", "lnolan@breitbart.com",
                "mal@lemburg.com", "michiel@michielbdejong.com", "optik-users@lists.sourceforge.net",
                "sendmail-bugs@sendmail.org",
                # smtplib's doctest addresses: well-formed addresses in registered domains, so email
                "Me@my.org", "me@my.org", "one@one.org", "two@two.org", "three@three.org", "four@four.org",
                "somebody@here.my.org"]
WEB_JUDGED: dict[tuple[str, str], bool] = {
    **{("email", e): True for e in _REAL_EMAILS},
    # An RFC 2822 Message-ID in email.utils' docstring: email-shaped, not an address.
    ("email", "142480216486.20800.16526388040877946887@nightshade.la.mastaler.com"): False,
    # socket's docstring example "convert IP addr string (123.45.67.89)": an illustration, no host.
    ("ipv4", "123.45.67.89"): False,
}


# The same sample before the false-positive fixes of 2026-11-26 (tallied from --dump then).
BEFORE_FIXES = """Before the fixes in pii.py / pii_checks.py (same sample, same judging): email 28 matches, 5 false
(4 fediverse handles `@user@mastodon.social`, 1 Message-ID) and 1 address swallowing the Chinese
text before it; credit_card 3 of 3 false (fraction digits of floats, `1.2511263318488451`);
phone 14 of 14 false (`20 +30 +120`, karyotypes `47,XY,+13 47,XX`, `+14.4 L atm`, answer lists
`300 500 1200`); ipv4 20 of 20 false (RFC 5737 documentation addresses, netmasks, `0.0.0.0`,
version strings `2.7.2.2`, the socket example `123.45.67.89`); ipv6 4 of 4 false
(`2001:db8::` documentation prefix, a netmask). Precision was then 0.82 / 0 / 0 / 0 / 0; every
case but the Message-ID and `123.45.67.89` is now a look-alike pinned in tests/test_curation_pii.py.
Known gap: phone numbers without a leading + outside the North American format (`021-54098577`,
`13611778776` on a Chinese page of the sample) are not found."""


def web_matches(texts) -> list[tuple[str, str, str, str]]:
    """(kind, match, context, where) for every match in the web sample."""
    out = []
    for where, text in texts:
        for kind, s, e in pii_spans(text, PII_TYPES):
            context = text[max(0, s - 50):e + 50].replace("\n", " ")
            out.append((kind, text[s:e], context, where))
    return out


def table(rows: list[list], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def ratio(a: int, b: int) -> str:
    return f"{a / b:.3f}" if b else "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dump", action="store_true", help="print every web match with context and exit")
    ap.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = ap.parse_args()
    texts = web_texts()
    matches = web_matches(texts)
    if args.dump:
        for kind, value, context, where in sorted(matches):
            print(f"{kind}\t{value!r}\t{context!r}\t{where}")
        return
    g = gold_scores()
    kinds = ["email", "phone", "ip", "credit_card", "ssn"]
    gold_rows = [[k, g["tp"][k] + g["fn"][k], g["tp"][k] + g["fp"][k], ratio(g["tp"][k], g["tp"][k] + g["fp"][k]),
                  ratio(g["tp"][k], g["tp"][k] + g["fn"][k])] for k in kinds]
    per_kind = defaultdict(Counter)
    unjudged = []
    for kind, value, _, _ in matches:
        verdict = WEB_JUDGED.get((kind, value))
        per_kind[kind]["true" if verdict else "false" if verdict is False else "unjudged"] += 1
        if verdict is None:
            unjudged.append((kind, value))
    web_rows = [[k, sum(c.values()), c["true"], c["false"], ratio(c["true"], c["true"] + c["false"])]
                for k, c in sorted(per_kind.items())]
    silent = [k for k in PII_TYPES if k not in per_kind]
    other_fp = {k: n for k, n in g["fp"].items() if k not in kinds}
    words = sum(len(t.split()) for _, t in texts)
    report = "\n".join([
        "PII redaction (pipelines/curation/pii.py), `python benchmarks/pii_eval.py`.", "",
        f"Labelled sentences (../shared/data/pii, NeMo-Curator test data, {sum(1 for _ in glob.glob(str(DATA / 'pii' / '*.txt')))} files; "
        "small: a handful of values per type):", "",
        table(gold_rows, ["type", "gold", "predicted", "precision", "recall"]), "",
        f"Predictions of other types on these sentences (all false): {other_fp or 'none'}; the 50 "
        "<address> lines (house numbers, ZIP codes) and the birth dates produce no match.", "",
        f"Web sample: {len(texts)} documents, {words:,} words (real WARC and readability pages, "
        "CCNet jsonl, GSM8K and MMLU test items, standard library docstrings); every distinct match judged "
        "by hand in context:", "",
        table(web_rows, ["type", "matches", "true", "false", "precision"]), "",
        f"No matches at all for: {', '.join(silent)}.", "",
        BEFORE_FIXES,
    ] + ([f"Unjudged matches: {len(unjudged)} (run --dump and judge them)."] if unjudged else []))
    print(report)
    for m in g["mistakes"]:
        print("  ", m)
    if not args.no_write:
        write_section(report)


def write_section(body: str) -> None:
    from _results import replace_section

    replace_section("pii", f"## PII redaction: precision and recall\n\n{body}")


if __name__ == "__main__":
    main()
