"""One-line progress with rate and ETA for long phases (curation parts, dedup, ...).

    meter = Meter("curate: parts", total=120, say=print, unit="parts")
    meter.update(7, "3,200 records")
    # curate: parts 7/120 (6%), 0.8 parts/s, ETA 2 min 21 s, 3,200 records

    records = list(meter.track(ds.iter_rows(), note=lambda row: f"{row['tokens']:,} tokens"))

A line is printed at most every `every_s` seconds, and always for the last item, so a long
phase shows a few lines a minute, never a bar per Ray operator. Used by curation (parts, dedup
phases), tokenize (shards), Tune (tuning/progress.py: each trial, the search) and evaluation
(pipelines/evaluation/jobs.py gather: jobs). Tests: tests/test_progress.py.
"""
from __future__ import annotations

import time


def duration(seconds: float) -> str:
    """3 s, 2 min 21 s, 1 h 05 min."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Meter:
    def __init__(self, label: str, total: int, say=print, unit: str = "", every_s: float = 5.0):
        self.label, self.total, self.say, self.unit, self.every_s = label, total, say, unit, every_s
        self.started = time.time()
        self._last = self.started  # the first line after every_s, or at the end
        self._base = 0             # items done before `started` (restart)

    def restart(self, done: int) -> None:
        """Measure rate and ETA from now on, `done` items being done already (after a start-up
        that would make the rate look slower than it is)."""
        self.started = self._last = time.time()
        self._base = done

    def update(self, done: int, extra: str = "") -> str | None:
        """Report `done` of `total`; returns the line when one is printed."""
        now = time.time()
        if done < self.total and now - self._last < self.every_s:
            return None
        self._last = now
        self.say(line := self.line(done, now - self.started, extra))
        return line

    def track(self, items, note=lambda item: ""):
        """Yield `items`, counting each one done (`note(item)` is the line's extra text)."""
        for done, item in enumerate(items, 1):
            extra = note(item)
            self.update(done, extra)
            yield item

    def line(self, done: int, elapsed: float, extra: str = "") -> str:
        pct = f" ({100 * done / self.total:.0f}%)" if self.total else ""
        rate = (done - self._base) / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.label} {done}/{self.total}{pct}", f"{rate:.2f} {self.unit}/s".replace(" /s", "/s")]
        if done < self.total:
            parts.append(f"ETA {duration((self.total - done) / rate)}" if rate > 0 else "ETA unknown")
        else:
            parts.append(f"done in {duration(elapsed)}")
        return ", ".join(parts + ([extra] if extra else []))
