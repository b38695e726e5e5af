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
from dataclasses import dataclass

from pipelines.curation.quality_rules import c4_filter, fineweb_reason, gopher_repetition_reason

__all__ = ["normalize_text", "quality_reason", "c4_filter", "FILTERS", "DocStats"]

_STOP_WORDS = {"the", "be", "to", "of", "and", "that", "have", "with"}  # Gopher's list
_BULLETS = ("-", "*", "•", "‣", "–", "·")
_ELLIPSES = ("...", "…")
_SPACES = re.compile(r"[ \t\f\v\u00a0\u2000-\u200b\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_text(text: str, remove_control_chars: bool = True) -> str:
    """ftfy mojibake repair, Unicode NFC, and tidy whitespace (line structure is kept). ftfy also
    drops control characters unless remove_control_chars is False (cleaning.py has the full set)."""
    import ftfy

    text = unicodedata.normalize("NFC", ftfy.fix_text(text, remove_control_chars=remove_control_chars))
    lines = [_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


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


FILTERS = [word_count, mean_word_length, symbol_ratio, ellipsis_lines, bullet_lines,
           alpha_words, stop_words]


def quality_reason(text: str, cfg) -> str | None:
    """The first rule that rejects `text` (Gopher quality, Gopher repetition, FineWeb), or None."""
    stats = DocStats.of(text)
    for check in FILTERS:
        reason = check(stats, cfg)
        if reason:
            return reason
    if getattr(cfg, "gopher_repetition", True):
        reason = gopher_repetition_reason(text, cfg)
        if reason:
            return reason
    return fineweb_reason(text, cfg) if getattr(cfg, "fineweb_quality", True) else None
