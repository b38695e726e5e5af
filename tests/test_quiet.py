"""A quiet successful run without hidden errors (cluster/quiet.py), and --verbose showing everything.

    python -m pytest tests/test_quiet.py -q

No Ray cluster: the filters, environment and the trial thread's queue are checked directly. The
whole-run check (no WARNING or Traceback in `bespoke run --config configs/tiny.yaml`) is in
tests/test_lifecycle.py.
"""
from __future__ import annotations

import logging

import pytest

from cluster import quiet


@pytest.fixture
def driver_loggers():
    """The loggers quiet_driver() touches, with their filters restored afterwards."""
    names = {name for name, _ in quiet.KNOWN_NOISE}
    saved = {name: list(logging.getLogger(name).filters) for name in names}
    for name in names:          # start clean: connect() in an earlier test may have installed them
        logger = logging.getLogger(name)
        logger.filters[:] = [f for f in logger.filters if not isinstance(f, quiet.DropKnownNoise)]
    yield {name: logging.getLogger(name) for name in names}
    for name, filters in saved.items():
        logging.getLogger(name).filters[:] = filters


def _shown(logger: logging.Logger, level: int, message: str) -> bool:
    record = logger.makeRecord(logger.name, level, __file__, 1, message, None, None)
    return bool(logger.filter(record))


def test_known_noise_is_dropped_but_other_messages_of_the_same_logger_show(monkeypatch, driver_loggers):
    monkeypatch.delenv("BESPOKE_LOG_LEVEL", raising=False)
    quiet.quiet_driver()
    quiet.quiet_driver()                                    # twice: still one filter per logger
    progress, dataset = driver_loggers["ray.data._internal.progress"], driver_loggers["ray.data.dataset"]
    assert sum(isinstance(f, quiet.DropKnownNoise) for f in dataset.filters) == 1
    assert not _shown(progress, logging.WARNING, "Progress bars disabled. To enable, set `...`.")
    assert not _shown(dataset, logging.WARNING, "Warning: The Ray cluster currently does not have any "
                                                "available CPUs. The Dataset job will hang unless ...")
    assert _shown(dataset, logging.WARNING, "Some other warning from Ray Data")
    assert _shown(dataset, logging.ERROR, "Operator MapBatches failed: ValueError")
    from ray._private.ray_logging import _warn_once

    assert _warn_once() == ""                               # no "Ray deduplicates logs ..." hint


def test_verbose_keeps_rays_defaults(monkeypatch, driver_loggers):
    monkeypatch.setenv("BESPOKE_LOG_LEVEL", "debug")
    quiet.quiet_driver()
    assert _shown(driver_loggers["ray.data._internal.progress"], logging.WARNING, "Progress bars disabled.")
    assert "RAY_LOGGER_LEVEL" not in quiet.embedded_env(2)
    assert quiet.driver_env() == {}
    from pipelines.evaluation.config import EvalConfig
    from pipelines.evaluation.jobs import job_env

    assert "TQDM_DISABLE" not in job_env(EvalConfig())


def test_quiet_environment(monkeypatch):
    monkeypatch.delenv("BESPOKE_LOG_LEVEL", raising=False)
    env = quiet.embedded_env(2)
    assert env == {"RAY_worker_maximum_startup_concurrency": "4", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
                   "RAY_LOGGER_LEVEL": "warning"}
    assert quiet.driver_env() == {"TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}


def test_cli_verbose_sets_the_log_level(monkeypatch):
    from pipelines import cli

    monkeypatch.setenv("BESPOKE_LOG_LEVEL", "info")         # restored after the test
    monkeypatch.setattr(cli, "_run", lambda args: {})
    assert cli.main(["tokenize", "--verbose"]) == 0
    assert quiet.verbose()


def test_train_workers_report_line_is_below_the_level(monkeypatch):
    """Ray Train logs `Reporting training result N` at INFO on a logger named by its file path."""
    pytest.importorskip("ray.train")
    import importlib

    monkeypatch.delenv("BESPOKE_LOG_LEVEL", raising=False)
    module = importlib.import_module("ray.train.v2._internal.execution.context")
    logger = logging.getLogger(module.__file__)
    assert module.logger is logger                           # the upstream quirk this works around
    before = logger.level
    try:
        quiet.quiet_train_worker()
        assert not logger.isEnabledFor(logging.INFO) and logger.isEnabledFor(logging.WARNING)
    finally:
        logger.setLevel(before)


class _GoneQueue:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def put(self, item) -> None:
        raise self.error


def test_a_stopped_trials_queue_is_not_an_error():
    pytest.importorskip("ray")
    from ray.exceptions import ActorDiedError

    from tuning.trial import put_unless_gone

    assert put_unless_gone(_GoneQueue(ActorDiedError()), {"done": True}) is False
    with pytest.raises(ValueError):                          # anything else still surfaces
        put_unless_gone(_GoneQueue(ValueError("real problem")), {"done": True})
