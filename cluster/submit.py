"""`bespoke submit <stage>`: run one stage as a Ray job through the job server's SDK.

    bespoke submit pretrain --config configs/demo.yaml --set train.use_gpu=true \
        --address http://127.0.0.1:8265 --wait

is `ray job submit --working-dir . -- bespoke pretrain --config configs/demo.yaml ...` plus the
job's driver pinned to the head (`cluster/resources.py`), a few environment variables passed
through, and with `--wait` the job's exit status as this command's (0 succeeded, non-zero not).
Arguments the submit parser does not know (`--input`, `--output`, `--checkpoint`, ...) go to the stage.
"""
from __future__ import annotations

import os
import shlex
import sys
import time
import uuid
from pathlib import Path

from cluster.resources import entrypoint_resources

# Environment passed to the job when set here. Never the auth token: nodes have their own, and the
# runtime env is visible to everyone who can read the dashboard.
PASSTHROUGH_ENV = ("RAY_AUTH_MODE", "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "BESPOKE_PROGRESS_BARS",
                   "HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM")
EXCLUDES = ["runs/", ".venv/", ".git/", "**/__pycache__", "*.egg-info", ".pytest_cache/", ".hypothesis/"]
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
STAGES = ("curate", "tokenize", "pretrain", "tune", "finetune", "eval", "generate")


def add_submit_parser(sub) -> None:
    """Register `bespoke submit` on the CLI's subparsers."""
    p = sub.add_parser("submit", help="run one stage as a Ray job on a cluster (JobSubmissionClient)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=STAGES)
    p.add_argument("--config", help="run config YAML, relative to the working dir (shipped with the job)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--name", help="run name")
    p.add_argument("--address", help="job server, e.g. http://127.0.0.1:8265 (default: RAY_API_SERVER_ADDRESS"
                   " or RAY_ADDRESS)")
    p.add_argument("--working-dir", default=".", help="folder shipped with the job (default: .)")
    p.add_argument("--wait", action="store_true", help="wait for the job and exit with its status")
    p.add_argument("--no-driver-resource", action="store_true",
                   help="do not pin the driver to a node with the `driver` resource (plain `ray start` heads)")


def stage_command(stage: str, config: str | None, overrides: list[str], name: str | None,
                  extra: list[str]) -> list[str]:
    """The `bespoke <stage> ...` command line the job runs."""
    cmd = ["bespoke", stage]
    if config:
        cmd += ["--config", config]
    for item in overrides:
        cmd += ["--set", item]
    if name:
        cmd += ["--name", name]
    return cmd + list(extra)


def runtime_env(working_dir: str | Path = ".", environ: dict | None = None) -> dict:
    """The job's runtime env: the project folder as working_dir, and the passthrough variables."""
    environ = os.environ if environ is None else environ
    env_vars = {k: environ[k] for k in PASSTHROUGH_ENV if k in environ}
    return {"working_dir": str(working_dir), "excludes": EXCLUDES, "env_vars": env_vars}


def submit_stage(client, stage: str, command: list[str], working_dir=".", driver_resource: bool = True) -> str:
    """Submit `command` as a job; returns its submission id."""
    job_id = f"bespoke-{stage}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    return client.submit_job(entrypoint=shlex.join(command), submission_id=job_id,
                             runtime_env=runtime_env(working_dir),
                             entrypoint_resources=entrypoint_resources() if driver_resource else None,
                             metadata={"bespoke_stage": stage})


def wait_for(client, job_id: str, poll_s: float = 2.0, timeout_s: float | None = None,
             say=print) -> tuple[str, int]:
    """Poll until the job ends; returns (status, exit code): 0 for SUCCEEDED, else the driver's code
    (or 1 when it has none, e.g. STOPPED or failed before the driver started)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last = None
    while True:
        info = client.get_job_info(job_id)
        status = str(getattr(info.status, "value", info.status))
        if status != last:
            say(f"job {job_id}: {status}" + (f" ({info.message})" if info.message and status != "RUNNING" else ""))
            last = status
        if status in TERMINAL:
            break
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {status} after {timeout_s:.0f} s")
        time.sleep(poll_s)
    if status == "SUCCEEDED":
        return status, 0
    code = getattr(info, "driver_exit_code", None)
    return status, int(code) if code else 1


def log_tail(client, job_id: str, lines: int = 20) -> str:
    return "\n".join(client.get_job_logs(job_id).rstrip().splitlines()[-lines:])


def run_submit(args, extra: list[str]) -> int:
    """The `bespoke submit` command; returns the process exit code."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(args.address)
    command = stage_command(args.stage, args.config, args.overrides, args.name, extra)
    job_id = submit_stage(client, args.stage, command, args.working_dir, not args.no_driver_resource)
    address = args.address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS", "")
    where = f" --address {address}" if address else ""
    print(f"submitted job {job_id}: {shlex.join(command)}")
    status = getattr(client.get_job_status(job_id), "value", "?")
    print(f"  status: {status}  (now: ray job status {job_id}{where})")
    print(f"  logs:   ray job logs {job_id}{where}  (add --follow to stream)")
    if not args.wait:
        return 0
    status, code = wait_for(client, job_id)
    if code:
        print(f"--- last lines of the job's log ---\n{log_tail(client, job_id)}", file=sys.stderr)
    print(f"job {job_id} {status}, exit code {code}")
    return code
