"""What a successful run prints: Ray's messages that ask nothing of the user, fixed at their source.

A newcomer reads every WARNING and traceback as "something broke", so a successful `bespoke run`
prints neither. Each message below was traced to the Ray 2.60 code that emits it; it is either
fixed where bespokelm causes it (cluster/ray_env.py, tuning/trial.py, pipelines/tokenize.py) or,
where the message does not apply to a bespokelm run, dropped at its one logger by exact text, so
any other warning or error from the same logger still shows:

- Ray Data `Progress bars disabled. To enable, set ...` (ray.data._internal.progress): bespokelm
  turns Ray Data's bar per operator off on purpose and prints its own one-line progress.
- Ray Data `The Ray cluster currently does not have any available CPUs` (ray.data.dataset): a
  momentary `ray.available_resources()` reading while the previous stage's workers let go of
  their CPUs; `cluster.resources.preflight` has already checked that every stage's request fits.
- Ray's `(Ray deduplicates logs by default. Set RAY_DEDUP_LOGS=0 to disable ...)`, appended once
  to the first repeated worker line: connect() chooses deduplication (RAY_DEDUP_LOGS=1) on
  purpose; `quiet_driver()` marks Ray's once-only hint as given.
- Tune `Experiment state snapshotting has been triggered multiple times` (driver, read from
  TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S): each trial report carries a
  checkpoint and `num_to_keep=1` makes Tune snapshot its state on every one, so `--resume` never
  names a deleted checkpoint; the experiment folder is on local disk, where a snapshot is a
  small file write, not the bottleneck the warning fears.
- Ray Train `Reporting training result N: TrainingReport(...)` per report: logged at INFO by
  `ray/train/v2/_internal/execution/context.py` on a logger named by its *file path*, so
  `LoggingConfig(log_level=...)` (which filters `ray.train.*`) misses it; `quiet_train_worker()`
  sets that logger to WARNING in the training loop.
- Tune's `Checkpoint successfully created at: ...` per report (INFO in the trial's process):
  RAY_LOGGER_LEVEL=warning for the embedded Ray's worker processes.
- The raylet's `N PYTHON worker processes have been started ... Nx the maximum expected startup
  concurrency`: the raylet expects about one worker process per CPU, but each Ray Train run
  (pretraining and every Tune trial) also runs zero-CPU control processes (Tune's trial driver,
  its report queue, Train's controller and placement-group cleaner). The embedded Ray gets a
  startup concurrency of twice its CPUs (RAY_worker_maximum_startup_concurrency), which matches
  that count, and no preemption watcher (RAY_TRAIN_ENABLE_PREEMPTION_WATCHER=0: nothing drains
  the one node of an embedded Ray), one process fewer per Train run.

`BESPOKE_LOG_LEVEL=debug` (or `--verbose` on any stage) leaves Ray's defaults alone and shows
everything. Tests: tests/test_quiet.py, and tests/test_lifecycle.py (no WARNING or Traceback
in the output of `bespoke run --config configs/tiny.yaml`).
"""
from __future__ import annotations

import logging
import os

# (logger name, text the message contains): messages that ask nothing of a bespokelm user.
KNOWN_NOISE = (
    ("ray.data._internal.progress", "Progress bars disabled"),
    ("ray.data._internal.progress", "Progress bars for operators disabled"),
    ("ray.data.dataset", "does not have any available CPUs"),
)
# Ray Train's per-report INFO line comes from a logger named after this file (see above).
_TRAIN_CONTEXT_MODULE = "ray.train.v2._internal.execution.context"


def verbose() -> bool:
    """True when the user asked to see everything (BESPOKE_LOG_LEVEL=debug, or --verbose)."""
    return os.environ.get("BESPOKE_LOG_LEVEL", "").lower() == "debug"


def set_verbose() -> None:
    """What `--verbose` does: BESPOKE_LOG_LEVEL=debug, inherited by the embedded Ray's processes."""
    os.environ["BESPOKE_LOG_LEVEL"] = "debug"


def embedded_env(num_cpus: int | None) -> dict[str, str]:
    """Environment for an embedded Ray (set before ray.init, so its raylet and workers inherit it)."""
    cpus = num_cpus or os.cpu_count() or 1
    env = {"RAY_worker_maximum_startup_concurrency": str(2 * cpus),
           "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}
    if not verbose():
        env["RAY_LOGGER_LEVEL"] = "warning"
    return env


def driver_env() -> dict[str, str]:
    """Environment for this driver process, on any cluster."""
    return {} if verbose() else {"TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}


class DropKnownNoise(logging.Filter):
    """A logger filter that drops records whose message contains one of `texts`."""

    def __init__(self, texts: list[str]) -> None:
        super().__init__()
        self.texts = tuple(texts)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self.texts)


def quiet_driver() -> None:
    """Install the KNOWN_NOISE filters on their loggers (once; nothing in verbose mode)."""
    if verbose():
        return
    from ray.util.debug import log_once

    log_once("log_dedup_warning")          # ray/_private/ray_logging: the hint is printed once
    by_logger: dict[str, list[str]] = {}
    for name, text in KNOWN_NOISE:
        by_logger.setdefault(name, []).append(text)
    for name, texts in by_logger.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropKnownNoise) for f in logger.filters):
            logger.addFilter(DropKnownNoise(texts))


def quiet_train_worker() -> None:
    """In a Ray Train worker: no `Reporting training result N` INFO line per report."""
    if verbose():
        return
    import importlib

    module = importlib.import_module(_TRAIN_CONTEXT_MODULE)
    logging.getLogger(module.__file__).setLevel(logging.WARNING)
    logging.getLogger(module.__name__).setLevel(logging.WARNING)  # should Ray fix the name
