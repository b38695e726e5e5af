"""FineWeb's filter chain as datatrove 0.10.1 runs it: `quality_rules: fineweb` in CurateConfig.

FineWeb (Penedo et al. 2024; datatrove examples/fineweb.py) filters the trafilatura text with

    GopherRepetitionFilter -> GopherQualityFilter -> C4QualityFilter(filter_no_terminal_punct=False)
    -> FineWebQualityFilter

each on the text the previous one left (C4 removes lines; nothing repairs the text first). To make
the same keep/drop decisions this module copies datatrove's formulas, not the paper's wording:
words are spaCy tokens (datatrove's English tokenizer: spacy.blank("en") + sentencizer, so "," and
"n't" are words of their own), Gopher counts only words with a non-punctuation character for the
length rules, stop words are matched case-sensitively, lines are str.splitlines() with blank
lines counted, C4 counts sentences per kept line, FineWeb's line-end rule uses datatrove's
TERMINAL_PUNCTUATION. Source files (huggingface/datatrove v0.10.1): src/datatrove/utils/text.py,
utils/word_tokenizers.py (SpaCyTokenizer), pipeline/filters/gopher_quality_filter.py,
gopher_repetition_filter.py, c4_filters.py, fineweb_quality_filter.py. Thresholds come from
CurateConfig, whose defaults are datatrove's.

    text, reason = fineweb_filters(text, cfg)   # reason None: kept (text has C4's lines removed)
"""
from __future__ import annotations

from functools import lru_cache

from pipelines.curation.quality_rules import c4_filter, fineweb_reason, gopher_repetition_reason

# datatrove utils/text.py PUNCTUATION (with the C0/C1 controls it appends) and TERMINAL_PUNCTUATION.
PUNCTUATION = ("!/—”:％１〈&(、━\\【#%「」，】；+^]~“《„';’{|∶´[=-`*．（–？！：$～«〉,><》)?）。…@_.\"}►»"
               + "".join(map(chr, (x for a, b in ((0, 9), (11, 13), (13, 32), (127, 160)) for x in range(a, b)))))
TERMINAL_PUNCTUATION = tuple(
    "!.?\u0589\u061d\u061e\u061f\u06d4\u0700\u0701\u0702\u07f9\u0837\u0839\u083d\u083e\u0964"
    "\u0965\u104a\u104b\u1362\u1367\u1368\u166e\u1735\u1736\u17d4\u17d5\u17d6\u17d9\u17da\u1803"
    "\u1809\u1944\u1945\u1aa8\u1aa9\u1aaa\u1aab\u1b5a\u1b5b\u1b5e\u1b5f\u1b7d\u1b7e\u1c3b\u1c3c"
    "\u1c7e\u1c7f\u203c\u203d\u2047\u2048\u2049\u2e2e\u2e3c\u2e53\u2e54\u3002\ua4ff\ua60e\ua60f"
    "\ua6f3\ua6f7\ua876\ua877\ua8ce\ua8cf\ua92f\ua9c8\ua9c9\uaa5d\uaa5e\uaa5f\uaaf0\uaaf1\uabeb"
    "\ufe52\ufe56\ufe57\uff01\uff0e\uff1f\uff61\U00010a56\U00010a57\U00010f55\U00010f56\U00010f57"
    "\U00010f58\U00010f59\U00010f86\U00010f87\U00010f88\U00010f89\U00011047\U00011048\U000110be"
    "\U000110bf\U000110c0\U000110c1\U00011141\U00011142\U00011143\U000111c5\U000111c6\U000111cd"
    "\U000111de\U000111df\U00011238\U00011239\U0001123b\U0001123c\U000112a9\U0001144b\U0001144c"
    "\U000115c2\U000115c3\U000115c9\U000115ca\U000115cb\U000115cc\U000115cd\U000115ce\U000115cf"
    "\U000115d0\U000115d1\U000115d2\U000115d3\U000115d4\U000115d5\U000115d6\U000115d7\U00011641"
    "\U00011642\U0001173c\U0001173d\U0001173e\U00011944\U00011946\U00011a42\U00011a43\U00011a9b"
    "\U00011a9c\U00011c41\U00011c42\U00011ef7\U00011ef8\U00011f43\U00011f44\U00016a6e\U00016a6f"
    "\U00016af5\U00016b37\U00016b38\U00016b44\U00016e98\U0001bc9f\U0001da88")
PUNCTUATION_SET = set(PUNCTUATION) | set(TERMINAL_PUNCTUATION)
STOP_WORDS = {"the", "be", "to", "of", "and", "that", "have", "with"}  # gopher_quality_filter.py
_BULLETS = ("•", "-")  # gopher_quality_filter.py: only these two start a bullet line
_ELLIPSES = ("...", "…")


@lru_cache(maxsize=1)
def _nlp():
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    return nlp


# spaCy keeps every new string and lexeme in its vocabulary, and caches each span's affix split: on
# web text the vocabulary grows without end. Its memory zones free them, but inside a zone the
# caches stay cold (tokenizing ~2x slower; a zone per document ~6x), so instead the tokenizer is
# rebuilt once the vocabulary passes this many strings (~100 MB).
_MAX_VOCAB_STRINGS = 500_000


def _tokenizer():
    """The shared spaCy pipeline, rebuilt when its vocabulary has grown past _MAX_VOCAB_STRINGS."""
    if len(_nlp().vocab.strings) > _MAX_VOCAB_STRINGS:
        _nlp.cache_clear()
    return _nlp()


class _LineTokens:
    """spaCy docs of a document's lines, each line tokenized once and shared by every rule.

    spaCy's tokenizer splits on whitespace first and tokenizes each whitespace-free span alone, so
    the tokens of a text are the tokens of its lines in order: the words before and after C4's
    line removal, and C4's per-line sentence count, all come from one pass (datatrove tokenizes
    the document once per filter and every line again for sentences)."""

    def __init__(self):
        self.nlp = _tokenizer()
        self.docs: dict[str, tuple] = {}  # stripped line -> (Doc, words)

    def _line(self, line: str) -> tuple:
        line = line.strip()  # C4 hands over stripped lines; whitespace tokens are dropped anyway
        entry = self.docs.get(line)
        if entry is None:
            self.nlp.max_length = max(self.nlp.max_length, len(line) + 10)
            doc = self.nlp.make_doc(line)
            entry = self.docs[line] = (doc, [w for t in doc if (w := t.text.strip())])
        return entry

    def words(self, text: str) -> list[str]:
        """spaCy tokens, stripped, empty ones dropped (datatrove SpaCyTokenizer.word_tokenize)."""
        return [w for line in text.splitlines() for w in self._line(line)[1]]

    def sentence_count(self, lines: list[str]) -> int:
        """Sentences over lines, each line split alone (datatrove split_into_sentences:
        sentencizer spans, at least 1 per line)."""
        sentencizer = self.nlp.get_pipe("sentencizer")
        return sum(max(1, sum(1 for _ in sentencizer(self._line(line)[0]).sents)) for line in lines)


def words(text: str) -> list[str]:
    """spaCy tokens of `text`, stripped, empty ones dropped (datatrove SpaCyTokenizer.word_tokenize)."""
    return _LineTokens().words(text)


def sentence_count(lines: list[str]) -> int:
    """Sentences over lines, each line split alone (datatrove split_into_sentences)."""
    return _LineTokens().sentence_count(lines)


def gopher_quality_reason(text: str, tokens: list[str], cfg) -> str | None:
    """datatrove GopherQualityFilter.filter, rule by rule, in its order (reason names as filters.py)."""
    content = [w for w in tokens if any(ch not in PUNCTUATION_SET for ch in w)]
    if cfg.min_words and len(content) < cfg.min_words:
        return "gopher_too_few_words"
    if cfg.max_words and len(content) > cfg.max_words:
        return "gopher_too_many_words"
    if content:  # datatrove takes np.mean, NaN (no rule fires) for an empty list
        mean = sum(len(w) for w in content) / len(content)
        if cfg.min_mean_word_length and mean < cfg.min_mean_word_length:
            return "gopher_short_words"
        if cfg.max_mean_word_length and mean > cfg.max_mean_word_length:
            return "gopher_long_words"
    n = max(1, len(tokens))
    if cfg.max_symbol_word_ratio and (text.count("#") / n > cfg.max_symbol_word_ratio or
                                      (text.count("...") + text.count("…")) / n > cfg.max_symbol_word_ratio):
        return "gopher_symbol_ratio"
    lines = text.splitlines() or [""]
    if cfg.max_bullet_line_fraction and \
            sum(ln.lstrip().startswith(_BULLETS) for ln in lines) / len(lines) > cfg.max_bullet_line_fraction:
        return "gopher_bullet_lines"
    if cfg.max_ellipsis_line_fraction and \
            sum(ln.rstrip().endswith(_ELLIPSES) for ln in lines) / len(lines) > cfg.max_ellipsis_line_fraction:
        return "gopher_ellipsis_lines"
    if cfg.min_alpha_word_fraction and \
            sum(any(c.isalpha() for c in w) for w in tokens) / n < cfg.min_alpha_word_fraction:
        return "gopher_few_alpha_words"
    if cfg.min_stop_words and len(STOP_WORDS & set(tokens)) < cfg.min_stop_words:
        return "gopher_few_stop_words"
    return None


def fineweb_filters(text: str, cfg) -> tuple[str, str | None]:
    """FineWeb's chain on `text`: (text after C4's line removal, None) or (text, first reason).
    The switches gopher_repetition, c4_lines and fineweb_quality leave a filter out."""
    if not text:
        return text, "empty"  # GopherRepetitionFilter: "empty"
    lines = _LineTokens()
    tokens = lines.words(text)
    if cfg.gopher_repetition:
        reason = gopher_repetition_reason(text, cfg, tokens)
        if reason:
            return text, reason
    reason = gopher_quality_reason(text, tokens, cfg)
    if reason:
        return text, reason
    if cfg.c4_lines:
        out, reason = c4_filter(text, cfg, lines.sentence_count)
        if reason:
            return text, reason
        if out != text:
            text, tokens = out, lines.words(out)
    if cfg.fineweb_quality:
        reason = fineweb_reason(text, cfg, tokens, TERMINAL_PUNCTUATION)
        if reason:
            return text, reason
    return text, None
