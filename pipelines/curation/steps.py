"""Per-document steps: extract, normalize, quality, pii. Each is a `Step` run by map_batches.

The base class does the bookkeeping DESIGN.md asks for: it hands the subclass only rows whose
status is still `kept`, turns a returned reason into `dropped:<step>:<reason>` and an exception
into `errored:<step>:<error>` for that row alone, and keeps the table schema stable. A subclass
only implements `process(row) -> None | reason`, editing `row["text"]` in place if it must.
Steps do not know whether they run locally or on a cluster.

    ds = ds.map_batches(Quality(cfg), batch_format="pyarrow", batch_size=64)
    table = Quality(cfg)(table)   # the same, without Ray (tests)
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

import pyarrow as pa

from pipelines.curation.cleaning import clean, remove_boilerplate_lines
from pipelines.curation.filters import c4_filter, normalize_text, quality_reason
from pipelines.curation.fineweb_rules import fineweb_filters
from pipelines.curation.pii import PII_TYPES, redact
from pipelines.curation.readers import KEPT


class Step:
    name = "step"
    drop_columns: tuple[str, ...] = ()  # columns this step consumes and removes
    count_columns: tuple[str, ...] = ()  # int64 counters this step adds (summed in the report)
    text_columns: tuple[str, ...] = ()  # string columns this step adds (null until set)
    float_columns: tuple[str, ...] = ()  # float64 columns this step adds (null until set)

    def __init__(self, cfg):
        self.cfg = cfg

    def process(self, row: dict) -> str | None:
        raise NotImplementedError

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        for row in rows:
            for col in self.count_columns:
                row.setdefault(col, 0)
            for col in self.text_columns + self.float_columns:
                row.setdefault(col, None)
            if row["status"] != KEPT:
                continue
            try:
                reason = self.process(row)
            except Exception as exc:  # noqa: BLE001 - one bad document, not the batch
                row["status"] = f"errored:{self.name}:{type(exc).__name__}: {str(exc)[:200]}"
            else:
                if reason:
                    row["status"] = f"dropped:{self.name}:{reason}"
        return pa.Table.from_pylist(rows, schema=self._schema(batch.schema))

    def _schema(self, schema: pa.Schema) -> pa.Schema:
        for col in self.drop_columns:
            schema = schema.remove(schema.get_field_index(col))
        added = [(c, pa.int64()) for c in self.count_columns] + [(c, pa.string()) for c in self.text_columns]
        for col, kind in added + [(c, pa.float64()) for c in self.float_columns]:
            if col not in schema.names:
                schema = schema.append(pa.field(col, kind))
        return schema


class Extract(Step):
    """HTML to main text with trafilatura; rows that arrive with text only (WET, jsonl) pass.
    n_chars_extracted: the text's length before any cleaning or filter (the report's "before")."""
    name = "extract"
    drop_columns = ("html",)
    count_columns = ("n_chars_extracted",)

    def process(self, row: dict) -> str | None:
        reason = self._extract(row)
        if reason is None:
            row["n_chars_extracted"] = len(row["text"])
        return reason

    def _extract(self, row: dict) -> str | None:
        html = row.pop("html")
        if not html:
            return None if row["text"].strip() else "empty"
        if len(html) > self.cfg.max_html_bytes:
            return "html_too_large"
        if is_binary(html):
            return "binary_content"
        import trafilatura

        with time_limit(self.cfg.extract_timeout_s):
            text = trafilatura.extract(html, favor_precision=self.cfg.favor_precision, include_comments=False,
                                       include_tables=True, deduplicate=self.cfg.extract_deduplicate)
        if not text or not text.strip():
            return "no_text"
        if len(text) > self.cfg.max_text_chars:
            text = text[: text.rfind("\n", 0, self.cfg.max_text_chars) + 1 or self.cfg.max_text_chars]
        row["text"] = text
        return None


_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\r\f\b\x1b")


def is_binary(data: bytes, sample: int = 4096) -> bool:
    """An image, archive or executable served as text/html: its first 4 KB hold a NUL byte or
    more than 5% control bytes. Text in any common encoding (UTF-8, Latin-1, GBK, Shift-JIS)
    has none; random bytes have about 10%."""
    head = data[:sample]
    return b"\x00" in head or len(head) - len(head.translate(None, _CONTROL_BYTES)) > 0.05 * len(head)


@contextmanager
def time_limit(seconds: float):
    """Raise TimeoutError in the block after `seconds` (SIGALRM; Ray runs tasks on the worker's
    main thread). Elsewhere (a non-main thread, Windows) the block runs without a limit."""
    if seconds <= 0 or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise TimeoutError(f"extraction took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Normalize(Step):
    """Cleaning switched on in the config (cleaning.py), ftfy + NFC + whitespace (repair_text),
    boilerplate lines, then (optionally) the C4 line and document rules, which quality_rules
    "fineweb" moves to the quality step."""
    name = "normalize"

    def process(self, row: dict) -> str | None:
        text = clean(row["text"], self.cfg)
        if self.cfg.repair_text:
            text = normalize_text(text, self.cfg.clean_control_chars)
        if self.cfg.clean_boilerplate_lines:
            text = remove_boilerplate_lines(text)
        if self.cfg.c4_lines and self.cfg.quality_rules == "default":
            text, reason = c4_filter(text, self.cfg)
            if reason:
                return reason
        row["text"] = text
        return None if text else "empty"


class Quality(Step):
    """Gopher quality, Gopher repetition and FineWeb rules (filters.py, quality_rules.py);
    the first failing rule is the reason. quality_rules "fineweb": FineWeb's chain with C4
    (fineweb_rules.py), which also removes C4's lines from the text."""
    name = "quality"

    def process(self, row: dict) -> str | None:
        if self.cfg.quality_rules == "fineweb":
            row["text"], reason = fineweb_filters(row["text"], self.cfg)
            return reason
        return quality_reason(row["text"], self.cfg)


class Pii(Step):
    """Replace PII (pii.py: emails, phones, IPs, cards, SSNs, IBANs, secrets) with typed
    placeholders; one counter column per type."""
    name = "pii"
    count_columns = tuple(f"n_pii_{kind}" for kind in PII_TYPES)

    def process(self, row: dict) -> str | None:
        row["text"], counts = redact(row["text"], self.cfg.pii_types, self.cfg.pii_phone_regions)
        for kind, n in counts.items():
            row[f"n_pii_{kind}"] = n
        return None


def _step_classes(cfg) -> list[type]:
    """The enabled per-document step classes, in pipeline order (config.ALL_STEPS)."""
    from pipelines.curation.content_steps import Blocklist, Decontaminate, LangId

    optional = {"blocklist": Blocklist, "normalize": Normalize, "langid": LangId, "quality": Quality,
                "pii": Pii, "decontaminate": Decontaminate}
    classes = [Extract]  # extraction always runs: later steps need text, not HTML
    return classes + [step for name, step in optional.items() if cfg.enabled(name) and (name != "pii" or cfg.pii)]


def per_document_steps(cfg) -> list[Step]:
    """The enabled per-document steps, built (models and lists loaded), in pipeline order."""
    return [step(cfg) for step in _step_classes(cfg)]


def step_names(cfg) -> list[str]:
    """Their names, without building them (the driver needs no language-id model)."""
    return [step.name for step in _step_classes(cfg)]
