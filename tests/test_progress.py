"""The one-line progress meter: rate, ETA, a line at most every every_s seconds and at the end.

    python -m pytest tests/test_progress.py -q
"""
from __future__ import annotations

from pipelines.progress import Meter, duration


def test_duration_reads_like_a_clock():
    assert [duration(s) for s in (0.4, 59, 61, 3600 + 65 * 60)] == ["0 s", "59 s", "1 min 01 s", "2 h 05 min"]


def test_meter_rate_eta_and_throttling(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("pipelines.progress.time.time", lambda: now[0])
    lines = []
    meter = Meter("curate: parts", 10, lines.append, unit="parts", every_s=5)
    now[0] += 1
    assert meter.update(1) is None              # too soon after the start
    now[0] += 4
    assert meter.update(2, "300 records") == "curate: parts 2/10 (20%), 0.40 parts/s, ETA 20 s, 300 records"
    now[0] += 1
    assert meter.update(3) is None              # too soon after the last line
    now[0] += 1
    assert meter.update(10).startswith("curate: parts 10/10 (100%), 1.43 parts/s, done in 7 s")
    assert len(lines) == 2
