"""Published quality rules (quality_rules.py): one pinned case per Gopher repetition, C4 and
FineWeb rule, each next to a text that passes it; FineWeb's chain (fineweb_rules.py,
`CurateConfig.fineweb()`) pinned on real pages from ../shared/data and, where datatrove is
installed, checked against it. No Ray.

    python -m pytest tests/test_curation_quality.py -q
"""
from __future__ import annotations

import gzip

import pytest

from pipelines.curation import CurateConfig
from pipelines.curation.quality_rules import c4_filter, fineweb_reason, gopher_repetition_reason
from pipelines.curation.steps import Extract, Normalize, Quality

ALL_ON = CurateConfig(gopher_dup_ngrams=True, fineweb_quality=True, c4_terminal_punct=True,
                      c4_curly_bracket=True)
SENTENCES = [
    "The river rose quickly after three days of steady rain in the hills.",
    "Farmers moved their cattle to higher ground before the bridge closed.",
    "A small museum in the old mill displays tools used by early settlers.",
    "Children learn to swim at the public pool during long summer holidays.",
    "Local bakers still use stone ovens that were built almost a century ago.",
    "Several hiking trails begin near the station and wind through pine forest.",
    "The council approved funding for new street lights along the harbour.",
    "Visitors often remark on how quiet the village becomes after sunset.",
]
PROSE = "\n".join(SENTENCES)


def test_clean_prose_passes_everything():
    assert gopher_repetition_reason(PROSE, ALL_ON) is None
    assert c4_filter(PROSE, ALL_ON) == (PROSE, None)
    assert fineweb_reason(PROSE, ALL_ON) is None


@pytest.mark.parametrize("text, reason", [
    ("\n\n".join(["A paragraph repeated here."] * 3 + SENTENCES[:3]), "gopher_rep_dup_para_frac"),
    ("\n\n".join(["A much longer paragraph that is repeated twice over in this text " * 3] * 2
                 + SENTENCES[:4]), "gopher_rep_dup_para_char_frac"),
    ("\n".join(["short dup"] * 4 + SENTENCES[:4]), "gopher_duplicate_lines"),
    ("\n".join([" ".join(SENTENCES[5:])] * 2 + SENTENCES[:4]), "gopher_rep_dup_line_char_frac"),
    (" ".join(["big cat"] * 30) + " " + PROSE, "gopher_rep_top_2_gram"),
    (PROSE + " " + " ".join(f"alpha beta gamma n{i}" for i in range(15)), "gopher_rep_top_3_gram"),
    (PROSE + " " + " ".join(f"alpha beta gamma delta n{i}" for i in range(8)), "gopher_rep_top_4_gram"),
    (" ".join(f"w{i}" for i in range(60)) + " " + " ".join(f"w{i}" for i in range(60)) + " " + PROSE,
     "gopher_rep_dup_5_grams"),
])
def test_gopher_repetition_rules(text, reason):
    assert gopher_repetition_reason(text, ALL_ON) == reason


def test_duplicate_ngram_rule_is_switchable():
    text = " ".join(f"w{i}" for i in range(60)) + " " + " ".join(f"w{i}" for i in range(60)) + " " + PROSE
    assert gopher_repetition_reason(text, CurateConfig()) is None


@pytest.mark.parametrize("line, kept", [
    ("A fine sentence with enough words.", True),
    ("Too short.", False),                                   # < 3 words
    ("Please enable JavaScript to see this page.", False),   # javascript
    ("Read our privacy policy for the details.", False),     # policy phrases
    ("A line without an end mark at all", False),            # terminal punctuation (when on)
    ("A line that trails off into nothing...", False),       # ellipsis is not an end mark
    ("A word " + "x" * 1001 + " is far too long.", False),   # max_word_length 1000
])
def test_c4_line_rules(line, kept):
    out, reason = c4_filter("\n".join(SENTENCES[:5] + [line]), ALL_ON)
    assert reason is None and (line in out) == kept


def test_c4_citations_and_document_rules():
    out, _ = c4_filter(PROSE.replace("topic", "topic[1][edit]"), ALL_ON)
    assert "[1]" not in out and "[edit]" not in out
    assert c4_filter(PROSE + "\nLorem ipsum dolor sit amet, consectetur.", ALL_ON)[1] == "c4_lorem_ipsum"
    assert c4_filter(PROSE + "\nThe dict {a: 1} is code here.", ALL_ON)[1] == "c4_curly_bracket"
    assert c4_filter("\n".join(SENTENCES[:4]), ALL_ON)[1] == "c4_too_few_sentences"
    assert c4_filter(PROSE + "\nThe dict {a: 1} is code here.", CurateConfig())[1] is None


@pytest.mark.parametrize("text, reason", [
    ("\n".join(s.rstrip(".") for s in SENTENCES), "fineweb_line_punct_ratio"),
    ("\n".join(["Short line one.", "Short two.", "Short three."] * 3 + SENTENCES[:2]),
     "fineweb_short_line_ratio"),
    (PROSE + "\n" + SENTENCES[0], "fineweb_char_dup_ratio"),
    ("\n\n\n\n\n\n".join(SENTENCES), "fineweb_list_ratio"),
])
def test_fineweb_rules(text, reason):
    assert fineweb_reason(text, ALL_ON) == reason


def test_c4_line_rules_come_before_document_rules():
    # datatrove's order: a line C4 removes (< 3 words) cannot drop the page for a curly bracket
    # or "lorem ipsum"; the page ars-1 below was dropped by the old order.
    assert c4_filter(PROSE + "\n{ x }\nLorem ipsum", ALL_ON) == (PROSE, None)


def test_fineweb_preset_and_validation():
    pytest.importorskip("spacy")
    cfg = CurateConfig.fineweb(val_fraction=0.1)
    assert (cfg.quality_rules, cfg.repair_text, cfg.extract_deduplicate, cfg.val_fraction) == ("fineweb", False, True, 0.1)
    assert cfg.gopher_dup_ngrams and cfg.fineweb_quality and cfg.c4_curly_bracket and not cfg.c4_terminal_punct
    with pytest.raises(ValueError, match="^quality_rules: must be one of"):
        CurateConfig(quality_rules="gopher")
    row = {"text": "caf\u00c3\u00a9  ok\n\n\n\nnext"}  # repair_text off: normalize leaves it
    assert Normalize(cfg).process(row) is None and row["text"] == "caf\u00c3\u00a9  ok\n\n\n\nnext"


# Real pages (../shared/data/html/readability) on which the FineWeb chain decides differently from
# the default rules: (FineWeb's reason as datatrove 0.10.1 gives it, the default rules' reason).
# Gopher's alpha-word rule counts spaCy tokens, punctuation included ("," is a word without a
# letter); royal-road fails Gopher's duplicate-line rule only before C4 removes its short repeated
# lines; title-and-h1-discrepancy has 5 sentences by spaCy's sentencizer, 4 by our regex.
# ars-1 is kept by both since the C4 line order fix (the old order dropped it for a "{").
ALL_ON_BUT_TERMINAL = CurateConfig(gopher_dup_ngrams=True, fineweb_quality=True, c4_curly_bracket=True)
PAGES = {
    "wikipedia": ("gopher_few_alpha_words", None),
    "wikipedia-3": ("gopher_few_alpha_words", None),
    "keep-tabular-data": ("gopher_few_alpha_words", None),
    "links-in-tables": ("gopher_few_alpha_words", None),
    "royal-road": ("gopher_duplicate_lines", None),
    "title-and-h1-discrepancy": (None, "c4_too_few_sentences"),
    "ars-1": (None, None),
}


@pytest.fixture(scope="module")
def page_text(shared_data):
    """page name -> text our extract step gives (FineWeb settings, no cross-page deduplicate)."""
    pytest.importorskip("spacy")                   # CurateConfig.fineweb() needs it (extra [fineweb])
    cfg, cache = CurateConfig.fineweb(extract_deduplicate=False), {}

    def text(name: str) -> str:
        if name not in cache:
            row = {"html": gzip.open(shared_data / "html" / "readability" / f"{name}.html.gz").read(), "text": ""}
            assert Extract(cfg).process(row) is None
            cache[name] = row["text"]
        return cache[name]
    return text


def _decide(cfg, text: str) -> tuple[str, str | None]:
    row = {"text": text}
    reason = Normalize(cfg).process(row) or Quality(cfg).process(row)
    return row["text"], reason


@pytest.mark.parametrize("page", sorted(PAGES))
def test_fineweb_rules_on_real_pages(page, page_text):
    fineweb, default = PAGES[page]
    assert _decide(CurateConfig.fineweb(), page_text(page))[1] == fineweb
    assert _decide(ALL_ON_BUT_TERMINAL, page_text(page))[1] == default


def test_fineweb_rules_match_datatrove(page_text, shared_data):
    """Same decision and, when kept, the same text as datatrove's FineWeb filters, on the pinned
    pages and every 10th readability page."""
    filters = pytest.importorskip("datatrove.pipeline.filters")
    from datatrove.data import Document

    chain = [filters.GopherRepetitionFilter(), filters.GopherQualityFilter(),
             filters.C4QualityFilter(filter_no_terminal_punct=False), filters.FineWebQualityFilter()]
    names = sorted(p.name[:-len(".html.gz")] for p in (shared_data / "html" / "readability").glob("*.html.gz"))
    for name in sorted(set(names[::10]) | set(PAGES)):
        doc = Document(text=page_text(name), id=name)
        kept = all(f.filter(doc) is True for f in chain)  # all() stops at the first drop
        text, reason = _decide(CurateConfig.fineweb(), page_text(name))
        assert (reason is None) == kept, (name, reason)
        assert not kept or text == doc.text, name


def test_fineweb_tokens_are_spacys_whole_text_tokens(monkeypatch):
    """fineweb_rules tokenizes line by line, once per document; that must equal spaCy on the
    whole text (datatrove's call), and the vocabulary must stay bounded."""
    spacy = pytest.importorskip("spacy")
    from pipelines.curation import fineweb_rules

    text = ("  Don't stop: see https://example.com/a?b=1.\r\n\"Quoted,\" she said (twice)...\n\n"
            "\tU.S.-based e-mail isn't <b>bold</b>; 3.5kg, $20!\u2028Next\u00a0line — done.")
    nlp = spacy.blank("en")
    expected = [t.text.strip() for t in nlp.make_doc(text) if t.text.strip()]
    assert fineweb_rules.words(text) == expected
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    nlp.add_pipe("sentencizer")
    assert fineweb_rules.sentence_count(lines) == sum(max(1, len(list(nlp(ln).sents))) for ln in lines)

    monkeypatch.setattr(fineweb_rules, "_MAX_VOCAB_STRINGS", len(fineweb_rules._nlp().vocab.strings) + 2000)
    sizes, pipelines = [], []  # the pipelines themselves, so a freed one's id cannot be reused
    for i in range(3000):  # each document brings ~4 new strings (2 words, their shapes)
        fineweb_rules.words(f"token{i} word{i}x")
        sizes.append(len(fineweb_rules._nlp().vocab.strings))
        if not pipelines or pipelines[-1] is not fineweb_rules._nlp():
            pipelines.append(fineweb_rules._nlp())
    assert len(pipelines) >= 2  # rebuilt once the vocabulary passed the limit
    assert max(sizes) <= fineweb_rules._MAX_VOCAB_STRINGS + 10
