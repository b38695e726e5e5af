"""`CurateConfig`: every knob of the curation stage, with defaults and validation.

The `curate:` section of a run config YAML becomes one of these (pipelines/config.py builds it);
in Python: `CurateConfig(val_fraction=0.1, steps=["extract", "normalize", "quality"])`;
`CurateConfig.fineweb()` reproduces FineWeb's extraction and filters (datatrove 0.10.1).
A bad value raises ValueError whose message starts with the field name.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

from pipelines.curation.pii import PII_TYPES  # every type the redactor knows, in its order
from pipelines.curation.pii_phone import PHONE_REGIONS

# Every step in pipeline order; `steps` picks a subset (reading and the split always run).
ALL_STEPS = ["extract", "blocklist", "normalize", "langid", "quality", "pii", "decontaminate",
             "exact_dedup", "minhash_dedup"]
STEP_ALIASES = {"dedup": ["exact_dedup", "minhash_dedup"]}
QUALITY_RULES = ("default", "fineweb")  # see CurateConfig.quality_rules


@dataclass
class CurateConfig:
    # Fraction of kept documents that go to val/, chosen by a hash of (seed, id): deterministic.
    val_fraction: float = 0.05
    seed: int = 0
    # Mixing weight per source name (inputs named `name=path`; unnamed inputs are named by file):
    # each train document of a source is written floor(w) times plus once more with probability
    # w - floor(w), decided by a hash of its id (mixing.py): 2.0 = every document twice, 0.5 = the
    # same half on every run, 0 = none. Sources not listed have weight 1. Val is not weighted.
    source_weights: dict[str, float] = field(default_factory=dict)
    # Steps to run, any subset of ALL_STEPS; order is always the pipeline order. Reading and
    # extraction always run (later steps need text), so leaving out "extract" changes nothing.
    steps: list[str] = field(default_factory=lambda: list(ALL_STEPS))

    # Readers: the field / column holding the text in jsonl and parquet inputs (`content` for
    # code datasets); an `id` field in the input is kept as the document id.
    text_column: str = "text"
    # Manifests (manifest.py): an input ending in .paths.gz / .paths (Common Crawl's warc.paths.gz,
    # wet.paths.gz) stands for the files it lists, joined to this base; "" = the root of the
    # manifest's own bucket or host (s3://commoncrawl/ for a local manifest). E.g.
    # "https://data.commoncrawl.org/" (Common Crawl over HTTPS, no credentials) or "s3://my-mirror/".
    input_base_url: str = ""
    # Trial runs on a subset of the input files: at most this many (0 = all), the ones with the
    # smallest hash of (seed, path), so a rerun or a larger cap keeps the files already chosen.
    max_input_files: int = 0
    # ... and before that cap, this fraction of them, chosen by the same hash (1.0 = all).
    input_sample: float = 1.0
    # Object storage (store.configure_io): unsigned (anonymous) S3 / GCS requests for public
    # buckets: true, false, or null = anonymous only when no credentials are found.
    storage_anonymous: bool | None = None
    # Attempts per storage request (the first try included) before it fails; throttling (S3
    # SlowDown / 503) and transient errors are retried with exponential backoff.
    storage_max_attempts: int = 10

    # Text extraction (trafilatura). Pages with more HTML than this are dropped unread: huge
    # pages are rarely prose and dominate extraction time.
    max_html_bytes: int = 2_000_000
    # A page whose extraction takes longer becomes an error row (errored:extract:TimeoutError).
    extract_timeout_s: float = 30.0
    # Extracted texts longer than this are cut at a line boundary (a guard, not a filter).
    max_text_chars: int = 200_000
    # favor_precision drops more boilerplate at the cost of some content.
    favor_precision: bool = True
    # trafilatura's deduplicate: a text segment over 100 characters seen more than twice by the
    # same worker process is left out (an LRU cache per process, so it depends on document order).
    # datatrove's Trafilatura extractor, and so FineWeb, turns it on.
    extract_deduplicate: bool = False

    # Text repair in the normalize step: ftfy (mojibake), Unicode NFC, whitespace tidied (runs of
    # spaces, blank lines). FineWeb filters the extracted text unrepaired: off in fineweb().
    repair_text: bool = True
    # Cleaning in the normalize step (cleaning.py), before the repair above. Control characters
    # (C0/C1 except tab and newlines, zero-width space, BOM, soft hyphen) carry no text: removed
    # by default. The rest change text that is sometimes wanted
    # (emoji in chat data, "<div>" in HTML tutorials, typographic quotes), so they are opt-in:
    # emoji / pictographs / private-use icon glyphs, leftover HTML tags and entities, CCNet's
    # punctuation map (curly quotes, dashes, full-width punctuation), and short boilerplate lines
    # ("All rights reserved", "Subscribe to our newsletter", "12 likes", navigation rows).
    clean_control_chars: bool = True
    clean_emoji: bool = False
    clean_markup: bool = False
    normalize_punctuation: bool = False
    clean_boilerplate_lines: bool = False

    # Which implementation and order of the rules below (the thresholds are shared):
    # "default": C4 line and document rules in the normalize step, then in the quality step
    #   Gopher quality on whitespace words (filters.py), Gopher repetition, FineWeb (regex words).
    # "fineweb": the chain as FineWeb runs it in datatrove 0.10.1, all in the quality step on the
    #   text the normalize step leaves: Gopher repetition -> Gopher quality -> C4 -> FineWeb, with
    #   datatrove's formulas and its English tokenizer (spaCy; fineweb_rules.py). Needs spacy.
    quality_rules: str = "default"

    # Quality filters (Gopher rules: Rae et al. 2021, "Scaling Language Models", Appendix A.1.1).
    min_words: int = 50  # Gopher: 50 to 100,000 words
    max_words: int = 100_000
    min_mean_word_length: float = 3.0  # Gopher: mean word length in [3, 10]
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1  # Gopher: "#" and "..." per word < 0.1
    max_ellipsis_line_fraction: float = 0.3  # Gopher: < 30% of lines end in an ellipsis
    max_bullet_line_fraction: float = 0.9  # Gopher: < 90% of lines start with a bullet
    min_alpha_word_fraction: float = 0.8  # Gopher: >= 80% of words contain a letter
    min_stop_words: int = 2  # Gopher: at least 2 of the, be, to, of, and, that, have, with
    # Gopher repetition (Gopher Table A1; datatrove GopherRepetitionFilter defaults). Fractions of
    # len(text): duplicate paragraphs/lines by count and by characters, characters of the most
    # frequent word 2/3/4-gram, characters in repeated 5..10-grams (one threshold per n).
    # The repeated 5..10-gram rule is off by default (gopher_dup_ngrams): it drops 22 of 52 pages
    # of the demo corpus (Python documentation repeats phrasing); turn it on for web crawls.
    gopher_repetition: bool = True
    gopher_dup_ngrams: bool = False
    max_duplicate_paragraph_fraction: float = 0.3
    max_duplicate_paragraph_char_fraction: float = 0.2
    max_duplicate_line_fraction: float = 0.3
    max_duplicate_line_char_fraction: float = 0.2
    max_top_2gram_fraction: float = 0.2
    max_top_3gram_fraction: float = 0.18
    max_top_4gram_fraction: float = 0.16
    max_duplicate_ngram_fractions: list[float] = field(
        default_factory=lambda: [0.15, 0.14, 0.13, 0.12, 0.11, 0.10])
    # C4 (Raffel et al. 2020 Sec. 2.2; datatrove C4QualityFilter), run in the normalize step: drop
    # lines with < 3 words, a word > 1000 chars, "javascript" or a cookie / terms / privacy policy
    # phrase; citations like [1] and [edit] removed; "lorem ipsum" drops the document, as do fewer
    # than 5 sentences. Two C4 rules are off by default: the terminal-punctuation line rule
    # (FineWeb turns it off too: filter_no_terminal_punct=False) and the curly-bracket document
    # rule, which drops every page with code (the demo corpus is Python documentation).
    c4_lines: bool = True
    c4_min_words_per_line: int = 3
    c4_max_word_length: int = 1000
    c4_min_sentences: int = 5
    c4_terminal_punct: bool = False
    c4_curly_bracket: bool = False
    # FineWeb quality (Penedo et al. 2024; datatrove FineWebQualityFilter defaults): >= 12% of lines
    # end in punctuation, <= 67% of lines are <= 30 chars, <= 1% of characters in duplicate lines,
    # <= 0.3 newlines per word. Off by default: the 1% duplicate-line rule drops about half of
    # the demo corpus (repeated signature lines); FineWeb runs it on every crawl page: turn it on
    # (with gopher_dup_ngrams) for the FineWeb recipe.
    fineweb_quality: bool = False
    fineweb_min_line_punct_ratio: float = 0.12
    fineweb_max_short_line_ratio: float = 0.67
    fineweb_short_line_length: int = 30
    fineweb_max_char_dup_ratio: float = 0.01
    fineweb_max_newline_ratio: float = 0.3

    # Language id (py3langid, model inside the wheel). Every document is labelled; with
    # `languages` set (e.g. ["en"]) others are dropped, and scores below min_language_score too
    # (FineWeb: English at >= 0.65 with fastText). Empty list: label only.
    languages: list[str] = field(default_factory=list)
    min_language_score: float = 0.65
    # Blocklists (content_steps.py): the default lists in blocklists/ plus these entries / files.
    blocklist_words: list[str] = field(default_factory=list)
    blocklist_word_files: list[str] = field(default_factory=list)
    blocklist_domains: list[str] = field(default_factory=list)
    blocklist_domain_files: list[str] = field(default_factory=list)
    # Benchmark decontamination: documents sharing a word n-gram (13, as GPT-3) with any text in
    # these files (jsonl: string fields per record; csv: cells; else lines) are dropped ("drop")
    # or only counted ("flag"). No files: the step does nothing.
    decontaminate_files: list[str] = field(default_factory=list)
    decontaminate_ngram: int = 13
    decontaminate_action: str = "drop"

    # PII redaction: matches become typed placeholders such as <EMAIL>; types and order in pii.py
    # (emails, phones, IPv4/IPv6, Luhn-checked cards, SSNs, mod-97 IBANs, keys and tokens).
    pii: bool = True
    pii_types: list[str] = field(default_factory=lambda: list(PII_TYPES))
    # Regions whose phone number formats are looked for (libphonenumber's ISO 3166 codes, tried in
    # this order; pii_phone.py): the default covers ~60 countries on every continent.
    pii_phone_regions: list[str] = field(default_factory=lambda: list(PHONE_REGIONS))

    # MinHash near-duplicate detection (datasketch). 14 bands x 8 rows = 112 permutations puts
    # the Jaccard threshold near (1/14)^(1/8) = 0.72 (the setting of Lee et al. 2022 / datatrove).
    ngram_size: int = 5  # word n-gram shingles
    num_perm: int = 112
    bands: int = 14
    rows: int = 8
    # Candidate pairs (documents sharing a band) stay duplicates only when their signatures agree
    # on at least this fraction of the num_perm positions (the MinHash Jaccard estimate); 0 keeps
    # every candidate, as datatrove does. With it, more and shorter bands can find pairs of lower
    # similarity without removing the unrelated documents that also share a band: measured on the
    # planted corpus of benchmarks/curation_throughput.py (RESULTS.md, curation (b)), bands 28 x
    # rows 4 with minhash_threshold 0.55 finds ~0.98 of planted copies where 14 x 8 finds ~0.86.
    minhash_threshold: float = 0.0

    # Output: whether to also write rejected/ (every row not kept, with its status). Train, val
    # and rejected get one parquet file per input part (parts.py), written by the part's task.
    write_rejected: bool = True
    # Rows per batch inside map_batches; smaller batches spread work over more tasks.
    batch_size: int = 64
    # Parts (parts.py): each input file is one part, the unit of work, output and resume; inputs
    # of fewer files than this are cut into pieces (byte ranges of WARCs) so that there are at
    # least this many, which is what a run over a few large files can use in parallel. The plan
    # depends on this and the inputs, never on the cluster, so a rerun finds the same parts.
    min_parts: int = 16

    @classmethod
    def fineweb(cls, **overrides) -> "CurateConfig":
        """FineWeb's extraction and filters (datatrove 0.10.1, examples/fineweb.py, without its URL
        filter, language filter and dedup): trafilatura with deduplicate, no text repair or
        cleaning, quality_rules "fineweb", and the rules FineWeb runs that the defaults leave off:
        duplicate 5-10-grams, FineWeb quality, C4's curly bracket rule (C4QualityFilter default
        filter_curly_bracket=True; FineWeb passes only filter_no_terminal_punct=False). The
        thresholds are already datatrove's defaults. `overrides` set any other field."""
        preset = dict(extract_deduplicate=True, repair_text=False, clean_control_chars=False,
                      quality_rules="fineweb", gopher_dup_ngrams=True, fineweb_quality=True,
                      c4_curly_bracket=True, c4_terminal_punct=False)
        return cls(**{**preset, **overrides})

    def __post_init__(self) -> None:
        # "dedup" is shorthand for both dedup steps (`bespoke curate --steps dedup`).
        self.steps = [s for step in self.steps for s in STEP_ALIASES.get(step, [step])]
        _check(0 <= self.val_fraction < 0.5, "val_fraction", f"must be in [0, 0.5), got {self.val_fraction}")
        for name, weight in self.source_weights.items():
            _check(isinstance(weight, (int, float)) and not isinstance(weight, bool) and 0 <= weight <= 1000,
                   "source_weights", f"weight of {name!r} must be a number in [0, 1000], got {weight!r}")
        unknown = [s for s in self.steps if s not in ALL_STEPS]
        _check(not unknown, "steps", f"unknown step(s) {unknown}; allowed: {ALL_STEPS}")
        _check(self.max_input_files >= 0, "max_input_files", f"must be >= 0 (0 = all), got {self.max_input_files}")
        _check(0 < self.input_sample <= 1, "input_sample", f"must be in (0, 1], got {self.input_sample}")
        _check(self.input_base_url.strip() == self.input_base_url, "input_base_url",
               f"must not start or end with whitespace, got {self.input_base_url!r}")
        _check(1 <= self.storage_max_attempts <= 100, "storage_max_attempts",
               f"must be in [1, 100], got {self.storage_max_attempts}")
        _check(self.max_html_bytes > 0, "max_html_bytes", f"must be > 0, got {self.max_html_bytes}")
        _check(self.max_text_chars > 0, "max_text_chars", f"must be > 0, got {self.max_text_chars}")
        _check(0 <= self.min_words <= self.max_words, "min_words",
               f"must be in [0, max_words={self.max_words}], got {self.min_words}")
        _check(0 < self.min_mean_word_length <= self.max_mean_word_length, "min_mean_word_length",
               f"must be in (0, max_mean_word_length={self.max_mean_word_length}], got {self.min_mean_word_length}")
        for name in ("max_symbol_word_ratio", "max_ellipsis_line_fraction", "max_bullet_line_fraction",
                     "min_alpha_word_fraction", "max_duplicate_line_fraction", "max_top_2gram_fraction",
                     "max_duplicate_paragraph_fraction", "max_duplicate_paragraph_char_fraction",
                     "max_duplicate_line_char_fraction", "max_top_3gram_fraction", "max_top_4gram_fraction",
                     "fineweb_min_line_punct_ratio", "fineweb_max_short_line_ratio",
                     "fineweb_max_char_dup_ratio"):
            value = getattr(self, name)
            _check(0 <= value <= 1, name, f"must be in [0, 1], got {value}")
        _check(len(self.max_duplicate_ngram_fractions) == 6 and
               all(0 <= v <= 1 for v in self.max_duplicate_ngram_fractions), "max_duplicate_ngram_fractions",
               f"must be 6 fractions in [0, 1] (n = 5..10), got {self.max_duplicate_ngram_fractions}")
        _check(self.c4_min_words_per_line >= 0 and self.c4_min_sentences >= 0, "c4_min_words_per_line",
               "c4_min_words_per_line and c4_min_sentences must be >= 0")
        _check(0 <= self.min_language_score <= 1, "min_language_score",
               f"must be in [0, 1], got {self.min_language_score}")
        _check(self.decontaminate_ngram >= 1, "decontaminate_ngram", f"must be >= 1, got {self.decontaminate_ngram}")
        _check(self.decontaminate_action in ("drop", "flag"), "decontaminate_action",
               f"must be drop or flag, got {self.decontaminate_action!r}")
        _check(self.quality_rules in QUALITY_RULES, "quality_rules",
               f"must be one of {QUALITY_RULES}, got {self.quality_rules!r}")
        _check(self.quality_rules != "fineweb" or importlib.util.find_spec("spacy") is not None, "quality_rules",
               "'fineweb' splits words and sentences with spaCy as datatrove does: pip install spacy "
               "(or pip install 'bespokelm[fineweb]')")
        _check(self.min_stop_words >= 0, "min_stop_words", f"must be >= 0, got {self.min_stop_words}")
        bad = [t for t in self.pii_types if t not in PII_TYPES]
        _check(not bad, "pii_types", f"unknown type(s) {bad}; allowed: {PII_TYPES}")
        _check(bool(self.pii_phone_regions), "pii_phone_regions", "must list at least one region, e.g. [US, GB]")
        bad = [r for r in self.pii_phone_regions if r not in _phone_regions_known()]
        _check(not bad, "pii_phone_regions", f"unknown region(s) {bad}: use ISO 3166 codes such as US, GB, DE, IN")
        _check(self.ngram_size >= 1, "ngram_size", f"must be >= 1, got {self.ngram_size}")
        _check(self.bands >= 1 and self.rows >= 1, "bands", f"bands and rows must be >= 1, got {self.bands}x{self.rows}")
        _check(self.bands * self.rows == self.num_perm, "num_perm",
               f"must equal bands*rows = {self.bands}*{self.rows} = {self.bands * self.rows}, got {self.num_perm}")
        _check(0 <= self.minhash_threshold <= 1, "minhash_threshold",
               f"must be in [0, 1] (0 keeps every LSH candidate), got {self.minhash_threshold}")
        _check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        _check(1 <= self.min_parts <= 1_000_000, "min_parts", f"must be in [1, 1000000], got {self.min_parts}")

    def enabled(self, step: str) -> bool:
        return step in self.steps


def _check(ok: bool, name: str, problem: str) -> None:
    if not ok:
        raise ValueError(f"{name}: {problem}")


def _phone_regions_known() -> set[str]:
    import phonenumbers

    return set(phonenumbers.SUPPORTED_REGIONS)
