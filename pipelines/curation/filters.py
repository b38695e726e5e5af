"""Text normalisation and quality filters: small pure functions, no Ray.

Each filter takes a `DocStats` (words and lines computed once) and the config, and returns None
to keep the document or a short reason to drop it. `quality_reason` runs them in order and
returns the first reason. Thresholds live in CurateConfig, each citing its source:
Gopher = Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights from Training
Gopher", Appendix A.1.1 (MassiveText quality and repetition filters); C4 = Raffel et al. 2020,
Section 2.2.

    reason = quality_reason(text, CurateConfig())   # None or e.g. "gopher_too_few_words"
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

_STOP_WORDS = {"the", "be", "to", "of", "and", "that", "have", "with"}  # Gopher's list
_BULLETS = ("-", "*", "•", "‣", "–", "·")
_ELLIPSES = ("...", "…")
_C4_BAD_LINE = re.compile(r"javascript|cookie policy|use of cookies|we use cookies|uses cookies", re.I)
_SPACES = re.compile(r"[ \t\f\v\u00a0\u2000-\u200b\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """ftfy mojibake repair, Unicode NFC, and tidy whitespace (line structure is kept)."""
    import ftfy

    text = unicodedata.normalize("NFC", ftfy.fix_text(text))
    lines = [_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def c4_clean_lines(text: str) -> tuple[str, str | None]:
    """C4 line rules: drop javascript / cookie-notice lines; "lorem ipsum" drops the document."""
    if "lorem ipsum" in text.lower():
        return text, "c4_lorem_ipsum"
    kept = [line for line in text.split("\n") if not _C4_BAD_LINE.search(line)]
    return "\n".join(kept), None


@dataclass
class DocStats:
    words: list[str]
    lines: list[str]

    @classmethod
    def of(cls, text: str) -> "DocStats":
        return cls(words=text.split(), lines=[ln for ln in text.split("\n") if ln.strip()])


def word_count(d: DocStats, cfg) -> str | None:
    if len(d.words) < cfg.min_words:
        return "gopher_too_few_words"
    if len(d.words) > cfg.max_words:
        return "gopher_too_many_words"
    return None


def mean_word_length(d: DocStats, cfg) -> str | None:
    mean = sum(len(w) for w in d.words) / max(1, len(d.words))
    if mean < cfg.min_mean_word_length:
        return "gopher_short_words"
    if mean > cfg.max_mean_word_length:
        return "gopher_long_words"
    return None


def symbol_ratio(d: DocStats, cfg) -> str | None:
    symbols = sum(w.count("#") + w.count("...") + w.count("…") for w in d.words)
    return "gopher_symbol_ratio" if symbols / max(1, len(d.words)) > cfg.max_symbol_word_ratio else None


def ellipsis_lines(d: DocStats, cfg) -> str | None:
    share = sum(ln.rstrip().endswith(_ELLIPSES) for ln in d.lines) / max(1, len(d.lines))
    return "gopher_ellipsis_lines" if share > cfg.max_ellipsis_line_fraction else None


def bullet_lines(d: DocStats, cfg) -> str | None:
    share = sum(ln.lstrip().startswith(_BULLETS) for ln in d.lines) / max(1, len(d.lines))
    return "gopher_bullet_lines" if share > cfg.max_bullet_line_fraction else None


def alpha_words(d: DocStats, cfg) -> str | None:
    share = sum(any(c.isalpha() for c in w) for w in d.words) / max(1, len(d.words))
    return "gopher_few_alpha_words" if share < cfg.min_alpha_word_fraction else None


def stop_words(d: DocStats, cfg) -> str | None:
    found = {w.lower().strip(".,;:!?\"'()") for w in d.words} & _STOP_WORDS
    return "gopher_few_stop_words" if len(found) < cfg.min_stop_words else None


def duplicate_lines(d: DocStats, cfg) -> str | None:
    dups = len(d.lines) - len(set(d.lines))
    return "gopher_duplicate_lines" if dups / max(1, len(d.lines)) > cfg.max_duplicate_line_fraction else None


def top_2gram(d: DocStats, cfg) -> str | None:
    """Gopher: characters covered by the most frequent word 2-gram, over all word characters."""
    words = [w.lower() for w in d.words]
    if len(words) < 2:
        return None
    (gram, count), = Counter(zip(words, words[1:])).most_common(1)
    share = count * (len(gram[0]) + len(gram[1])) / max(1, sum(len(w) for w in words))
    return "gopher_top_2gram" if share > cfg.max_top_2gram_fraction else None


FILTERS = [word_count, mean_word_length, symbol_ratio, ellipsis_lines, bullet_lines,
           alpha_words, stop_words, duplicate_lines, top_2gram]


def quality_reason(text: str, cfg) -> str | None:
    """The first filter that rejects `text`, or None when every filter keeps it."""
    stats = DocStats.of(text)
    for check in FILTERS:
        reason = check(stats, cfg)
        if reason:
            return reason
    return None
