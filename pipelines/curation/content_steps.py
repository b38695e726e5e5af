"""Per-document steps on content: language id, word / domain blocklists, benchmark decontamination.

- LangId: py3langid (langid.py's model ships inside the wheel: nothing is downloaded at run
  time). Every document gets a `language` and `language_score` (normalised probability); with
  `languages` set, other languages and scores below `min_language_score` are dropped (FineWeb
  keeps English at >= 0.65 with fastText; the same number is the default here).
- Blocklist: a document is dropped when its URL's host (or a parent domain) is on the domain
  list, or when it contains a listed word (C4 drops any page with a word from the LDNOOBW list).
  Default lists are blocklists/words.txt and blocklists/domains.txt; user lists add to them.
- Decontaminate: a document sharing any word n-gram (default 13, as GPT-3 did) with the
  evaluation texts in `decontaminate_files` is dropped (or only counted, with
  decontaminate_action="flag").

    LangId(cfg)(table), Blocklist(cfg)(table), Decontaminate(cfg)(table)   # pyarrow in, out
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

from pipelines.curation.steps import Step

_LISTS = Path(__file__).parent / "blocklists"
_WORDS = re.compile(r"\w+", re.U)


class LangId(Step):
    name = "langid"
    text_columns = ("language",)
    float_columns = ("language_score",)

    def __init__(self, cfg):
        super().__init__(cfg)
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self.identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

    def process(self, row: dict) -> str | None:
        lang, score = self.identifier.classify(row["text"][:20_000])
        row["language"], row["language_score"] = lang, round(float(score), 4)
        if self.cfg.languages and lang not in self.cfg.languages:
            return f"language_{lang}"
        if self.cfg.languages and score < self.cfg.min_language_score:
            return "language_low_score"
        return None


def read_list(paths: list) -> set[str]:
    """Lower-cased entries of one-per-line list files ('#' starts a comment)."""
    out = set()
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip().lower()
            if line:
                out.add(line)
    return out


class Blocklist(Step):
    name = "blocklist"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.words = read_list([_LISTS / "words.txt", *cfg.blocklist_word_files]) | {
            w.lower() for w in cfg.blocklist_words}
        self.domains = read_list([_LISTS / "domains.txt", *cfg.blocklist_domain_files]) | {
            d.lower() for d in cfg.blocklist_domains}

    def process(self, row: dict) -> str | None:
        host = (urlsplit(row.get("url") or "").hostname or "").lower()
        parts = host.split(".")
        if any(".".join(parts[i:]) in self.domains for i in range(len(parts) - 1)):
            return "domain"
        if self.words and any(w in self.words for w in _WORDS.findall(row["text"].lower())):
            return "word"
        return None


def ngram_hashes(text: str, n: int) -> set[bytes]:
    """8-byte hashes of the lower-cased word n-grams (texts shorter than n: the whole text)."""
    words = _WORDS.findall(text.lower())
    grams = [" ".join(words[i:i + n]) for i in range(max(1, len(words) - n + 1))] if words else []
    return {hashlib.blake2b(g.encode("utf-8"), digest_size=8).digest() for g in grams}


def eval_texts(path: str) -> list[str]:
    """Every string field of a jsonl file, every cell of a csv, or the lines of a text file."""
    p = Path(path)
    if p.suffix == ".jsonl":
        out = []
        for line in p.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out += _strings(json.loads(line))
        return out
    if p.suffix == ".csv":
        with p.open(encoding="utf-8") as f:
            return [cell for r in csv.reader(f) for cell in r]
    return p.read_text(encoding="utf-8").splitlines()


def _strings(obj) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [" ".join(s for v in obj.values() for s in _strings(v))]  # one text per record
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return []


class Decontaminate(Step):
    name = "decontaminate"
    count_columns = ("n_contaminated",)

    def __init__(self, cfg):
        super().__init__(cfg)
        n = cfg.decontaminate_ngram
        self.grams = set()
        for path in cfg.decontaminate_files:
            for text in eval_texts(path):
                if len(_WORDS.findall(text)) >= n:  # shorter items would match common phrases
                    self.grams |= ngram_hashes(text, n)

    def process(self, row: dict) -> str | None:
        if not self.grams:
            return None
        if ngram_hashes(row["text"], self.cfg.decontaminate_ngram) & self.grams:
            row["n_contaminated"] = 1
            return "benchmark_overlap" if self.cfg.decontaminate_action == "drop" else None
        return None
