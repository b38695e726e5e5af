"""Published quality rules as datatrove implements them: Gopher repetition, C4, FineWeb. No Ray.

Reference implementation (numbers and formulas copied from it, cited per rule):
huggingface/datatrove, src/datatrove/pipeline/filters/
  gopher_repetition_filter.py  GopherRepetitionFilter (Rae et al. 2021, Gopher, Table A1)
  c4_filters.py                C4QualityFilter (Raffel et al. 2020, C4, Sec. 2.2)
  fineweb_quality_filter.py    FineWebQualityFilter (Penedo et al. 2024, FineWeb)
Thresholds live in CurateConfig with these defaults. Fractions are over len(text) as datatrove
computes them, so keep/drop decisions match it on the same text and the same words (these
functions split words with a regex; fineweb_rules.py runs them in FineWeb's order on datatrove's
spaCy tokens, `quality_rules: fineweb`).

    gopher_repetition_reason(text, cfg)    # None or "gopher_rep_top_2_gram", ...
    text, reason = c4_filter(text, cfg)    # lines removed by the C4 line rules, or a doc reason
    fineweb_reason(text, cfg)              # None or "fineweb_line_punct_ratio", ...
"""
from __future__ import annotations

import re
from collections import Counter

_PARAGRAPHS = re.compile(r"\n{2,}")  # datatrove GopherRepetitionFilter.paragraph_exp
_LINES = re.compile(r"\n+")  # datatrove GopherRepetitionFilter.line_splitter
_WORD = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]", re.U)
# datatrove c4_filters.py: END_PUNCTUATION, ELLIPSIS, POLICY_SUBSTRINGS, CITATION_REGEX
_END_PUNCT = (".", "?", "!", '"', "'")
_ELLIPSIS = "..."
_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


def words_of(text: str) -> list[str]:
    """Word tokens, punctuation kept as separate tokens (datatrove's split_into_words keeps
    punctuation tokens too; n-grams are built over them)."""
    return [w for w in _WORD.findall(text) if w.strip()]


# ---------------------------------------------------------------- Gopher repetition

def _duplicates(items: list[str]) -> tuple[int, int]:
    """(duplicate elements, their characters): datatrove find_duplicates."""
    seen, dup_items, dup_chars = set(), 0, 0
    for item in items:
        if item in seen:
            dup_items += 1
            dup_chars += len(item)
        else:
            seen.add(item)
    return dup_items, dup_chars


def _top_ngram_chars(words: list[str], n: int) -> int:
    """Characters of the most frequent n-gram times its count: datatrove find_top_duplicate."""
    grams = Counter(" ".join(words[i:i + n]) for i in range(len(words) - n + 1))
    if not grams:
        return 0
    gram, count = grams.most_common(1)[0]
    return len(gram) * count


def _duplicate_ngram_chars(words: list[str], n: int) -> int:
    """Characters in n-grams seen before, skipping past each repeat: datatrove find_all_duplicate."""
    seen, repeated, i = set(), 0, 0
    while i < len(words) - n + 1:
        gram = "".join(words[i:i + n])
        if gram in seen:
            repeated += len(gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return repeated


def gopher_repetition_reason(text: str, cfg, words: list[str] | None = None) -> str | None:
    """Duplicate paragraphs / lines (count and chars), top 2-4-gram chars, duplicate 5-10-grams.
    Defaults (Gopher Table A1, datatrove): dup_para_frac 0.3, dup_para_char_frac 0.2,
    dup_line_frac 0.3, dup_line_char_frac 0.2, top n-grams (2, 0.2) (3, 0.18) (4, 0.16),
    duplicate n-grams (5, 0.15) (6, 0.14) (7, 0.13) (8, 0.12) (9, 0.11) (10, 0.10).
    `words`: the n-gram tokens (default words_of(text); fineweb_rules passes spaCy's)."""
    size = max(1, len(text))
    paragraphs = _PARAGRAPHS.split(text.strip())
    n_dup, chars = _duplicates(paragraphs)
    if n_dup / max(1, len(paragraphs)) > cfg.max_duplicate_paragraph_fraction:
        return "gopher_rep_dup_para_frac"
    if chars / size > cfg.max_duplicate_paragraph_char_fraction:
        return "gopher_rep_dup_para_char_frac"
    lines = _LINES.split(text)
    n_dup, chars = _duplicates(lines)
    if n_dup / max(1, len(lines)) > cfg.max_duplicate_line_fraction:
        return "gopher_duplicate_lines"
    if chars / size > cfg.max_duplicate_line_char_fraction:
        return "gopher_rep_dup_line_char_frac"
    words = words_of(text) if words is None else words
    tops = (cfg.max_top_2gram_fraction, cfg.max_top_3gram_fraction, cfg.max_top_4gram_fraction)
    for n, limit in enumerate(tops, 2):
        if _top_ngram_chars(words, n) / size > limit:
            return f"gopher_rep_top_{n}_gram"
    for n, limit in enumerate(cfg.max_duplicate_ngram_fractions if cfg.gopher_dup_ngrams else [], 5):
        if _duplicate_ngram_chars(words, n) / size > limit:
            return f"gopher_rep_dup_{n}_grams"
    return None


# ---------------------------------------------------------------- C4

def c4_filter(text: str, cfg, sentences=None) -> tuple[str, str | None]:
    """C4 line rules in datatrove C4QualityFilter.filter's order, per stripped line: a word longer
    than c4_max_word_length (1000) removes the line; citations ([1], [edit]) are cut; then the
    terminal-punctuation rule (if on), fewer than c4_min_words_per_line (3) words counted before
    the cut, "lorem ipsum" (drops the document), "javascript", a curly bracket (drops the document
    when c4_curly_bracket is on; C4 drops code pages), a cookie / terms / privacy phrase. Then
    fewer than c4_min_sentences (5) sentences drops the document.
    `sentences=None` (default rules): lines split on "\n", paragraph breaks kept, sentences
    counted by _SENTENCE_END over the kept text. `sentences=fn` (FineWeb rules): lines are
    str.splitlines(), blank lines dropped, fn(kept lines) sums the sentences of each line, as
    datatrove counts them (one call for all lines, after every line rule has run)."""
    kept = []
    for line in (text.split("\n") if sentences is None else text.splitlines()):
        line = line.strip()
        words = line.split()
        if not line:
            if sentences is None and kept and kept[-1]:
                kept.append("")  # default rules keep paragraph breaks
            continue
        if cfg.c4_max_word_length and any(len(w) > cfg.c4_max_word_length for w in words):
            continue
        line = _CITATION.sub("", line)
        if cfg.c4_terminal_punct and (not line.endswith(_END_PUNCT) or line.endswith(_ELLIPSIS)):
            continue
        if len(words) < cfg.c4_min_words_per_line:
            continue
        lower = line.lower()
        if "lorem ipsum" in lower:
            return text, "c4_lorem_ipsum"
        if "javascript" in lower:
            continue
        if cfg.c4_curly_bracket and "{" in line:
            return text, "c4_curly_bracket"
        if any(p in lower for p in _POLICY):
            continue
        kept.append(line)
    out = "\n".join(kept).strip()
    if sentences is not None:
        n_sentences = sentences(kept)
    else:
        n_sentences = len(_SENTENCE_END.split(out)) if out else 0
    if cfg.c4_min_sentences and n_sentences < cfg.c4_min_sentences:
        return out, "c4_too_few_sentences"
    return out, None


# ---------------------------------------------------------------- FineWeb

def fineweb_reason(text: str, cfg, words: list[str] | None = None, stop_chars: tuple = _END_PUNCT) -> str | None:
    """FineWeb quality rules (datatrove FineWebQualityFilter defaults): line_punct_thr 0.12 (share
    of lines ending in one of `stop_chars`), short_line_thr 0.67 (lines <= 30 chars),
    char_duplicates_ratio 0.01 (chars in duplicate lines / non-newline chars), new_line_ratio 0.3
    (newlines per word). stop_chars: . ' " ! ? as FineWeb was first released; datatrove 0.10.1
    uses its TERMINAL_PUNCTUATION (no quotes; fineweb_rules.py passes it). `words`: tokens for the
    newline ratio (default words_of(text))."""
    lines = [ln for ln in text.split("\n") if ln.strip()]
    if not lines:
        return "fineweb_empty"
    if sum(ln.endswith(stop_chars) for ln in lines) / len(lines) < cfg.fineweb_min_line_punct_ratio:
        return "fineweb_line_punct_ratio"
    short = sum(len(ln) <= cfg.fineweb_short_line_length for ln in lines) / len(lines)
    if short > cfg.fineweb_max_short_line_ratio:
        return "fineweb_short_line_ratio"
    if _duplicates(lines)[1] / max(1, len(text.replace("\n", ""))) > cfg.fineweb_max_char_dup_ratio:
        return "fineweb_char_dup_ratio"
    if text.count("\n") / max(1, len(words_of(text) if words is None else words)) > cfg.fineweb_max_newline_ratio:
        return "fineweb_list_ratio"
    return None
