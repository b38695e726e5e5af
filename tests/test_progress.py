"""The one-line progress meter (rate, ETA, a line at most every every_s seconds and at the end), and
its users: tokenize shards (track), each Tune trial and the search (TuneProgress), evaluation jobs.

    python -m pytest tests/test_progress.py -q
"""
from __future__ import annotations

import pytest

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


def test_track_counts_items_and_notes_each(monkeypatch):
    monkeypatch.setattr("pipelines.progress.time.time", lambda: 1000.0)
    lines = []
    meter = Meter("tokenize: shards", 3, lines.append, unit="shards")
    assert list(meter.track([{"tokens": 5}, {"tokens": 7}, {"tokens": 1}], lambda r: f"{r['tokens']} tokens")) \
        == [{"tokens": 5}, {"tokens": 7}, {"tokens": 1}]
    assert lines == ["tokenize: shards 3/3 (100%), 0.00 shards/s, done in 0 s, 1 tokens"]   # throttled to the last


def _trial(trial_id: str, **config):
    import types

    return types.SimpleNamespace(trial_id=trial_id, config=config, error_file="/x/error.txt")


def test_tune_progress_each_trial_and_the_whole_search(monkeypatch):
    """Per trial: steps done of max_steps, rate, ETA, the metric; per finished trial: the search's
    trials done of total, rate, ETA and the best so far."""
    pytest.importorskip("ray.tune")
    from tuning.progress import TuneProgress

    now = [1000.0]
    monkeypatch.setattr("pipelines.progress.time.time", lambda: now[0])
    lines = []
    cb = TuneProgress(lines.append, max_steps=20, metric="val_loss", every_s=0)
    cb.setup(total_num_samples=3)
    a, b = _trial("t0", lr=0.004334, batch_size=16), _trial("t1", lr=0.0011, batch_size=8)
    for t in (a, b):
        cb.on_trial_start(0, [a, b], t)
    now[0] += 2
    cb.on_trial_result(0, [a, b], a, {"step": 5, "val_loss": 6.5})
    assert lines[-1] == "tune: trial t0 (lr=0.00433 batch_size=16) 5/20, first report after 2 s, val_loss 6.500"
    now[0] += 1                                               # rate and ETA from the first report on
    cb.on_trial_result(0, [a, b], a, {"step": 10, "val_loss": 6.2})
    assert lines[-1] == "tune: trial t0 (lr=0.00433 batch_size=16) 10/20 (50%), 5.00 steps/s, ETA 2 s, val_loss 6.200"
    cb.on_trial_result(0, [a, b], b, {"step": 5, "val_loss": 6.9})
    cb.on_trial_complete(0, [a, b], b)
    assert lines[-2] == "tune: trial t1 (lr=0.0011 batch_size=8) done"
    assert lines[-1] == "tune: search 1/3 (33%), 0.33 trials/s, ETA 6 s, best val_loss 6.200 (trial t0)"
    now[0] += 1
    cb.on_trial_error(0, [a, b], a)
    assert "FAILED (details: /x/error.txt)" in lines[-2]
    assert lines[-1].startswith("tune: search 2/3 (67%), 0.50 trials/s, ETA 2 s, best val_loss 6.200")


def test_tune_progress_survives_pickling():
    pytest.importorskip("ray.tune")
    import pickle

    from tuning.progress import TuneProgress

    cb = TuneProgress(lambda line: None, max_steps=20)
    cb.finished, cb.best = 1, (6.0, "t0")
    restored = pickle.loads(pickle.dumps(cb))
    assert (restored.finished, restored.best, restored.max_steps, restored.progress) == (1, (6.0, "t0"), 20, print)


def test_evaluation_jobs_report_one_line_each(monkeypatch):
    """gather() without Ray runs the jobs in this process; each finished job is one progress line."""
    import ray

    from pipelines.evaluation.config import EvalConfig

    monkeypatch.setattr(ray, "is_initialized", lambda: False)   # an earlier test's Ray may be up
    from pipelines.evaluation.jobs import gather, submit

    lines = []
    handles = {("model", "perplexity"): submit(_job, EvalConfig(), 1), ("model", "cloze"): submit(_job, EvalConfig(), 2)}
    assert gather(handles, lines.append) == {("model", "perplexity"): {"x": 1, "seconds": 0.5},
                                            ("model", "cloze"): {"x": 2, "seconds": 0.5}}
    assert [line.split(", ")[0] for line in lines] == ["evaluate: jobs 1/2 (50%)", "evaluate: jobs 2/2 (100%)"]
    assert "ETA" in lines[0] and lines[0].endswith("model: perplexity finished (0.5 s)")
    assert "done in" in lines[1] and lines[1].endswith("model: cloze finished (0.5 s)")


def _job(cfg, x):
    return {"x": x, "seconds": 0.5}
