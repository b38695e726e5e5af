"""Stages as Ray jobs: a private local head (own ports and temp dir), a curation job, a training
job and a failing job submitted through `bespoke submit`'s code, their results and statuses.

Slow (a Ray head plus three jobs, about 2-3 minutes on 2 cores); the head is stopped by killing
only its own processes, never with `ray stop`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from cluster.local_head import LocalHead
from cluster.submit import runtime_env, stage_command, submit_stage, wait_for
from pipelines.cli import main as bespoke

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def head():
    pytest.importorskip("ray.job_submission")
    with LocalHead(num_cpus=2, resources={"driver": 4}) as h:
        yield h


@pytest.fixture(scope="module")
def client(head):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(head.dashboard_url)


def _run_job(client, stage, *args, timeout_s=240):
    cmd = stage_command(stage, None, [], None, list(args))
    job_id = submit_stage(client, stage, cmd, working_dir=REPO)
    status, code = wait_for(client, job_id, poll_s=1, timeout_s=timeout_s)
    return job_id, status, code


def _write_tokens(run: Path) -> None:
    """tokens/ and tokenizer/ as the tokenize stage writes them, from a little real prose."""
    import inspect
    import json as json_mod
    import os

    from modeling.tokenizer import Tokenizer
    from pipelines.tokenize import unigram_cross_entropy

    text = "\n\n".join(inspect.getdoc(o) or "" for m in (os, json_mod, inspect) for _, o in inspect.getmembers(m))
    tok = Tokenizer.train([text[i:i + 5000] for i in range(0, len(text), 5000)], vocab_size=512)
    tok.save(run / "tokenizer")
    ids = np.array(tok.encode(text), dtype=np.uint16)
    split = int(len(ids) * 0.9)
    (run / "tokens").mkdir(parents=True)
    ids[:split].tofile(run / "tokens" / "train.bin")
    ids[split:].tofile(run / "tokens" / "val.bin")
    meta = {"vocab_size": tok.vocab_size, "dtype": "uint16", "eos_id": tok.eos_id,
            "unigram_val_loss": unigram_cross_entropy(ids[:split], ids[split:], tok.vocab_size)}
    (run / "tokens" / "meta.json").write_text(json.dumps(meta))


def test_runtime_env_ships_the_project_and_passes_auth_mode_through():
    env = runtime_env(REPO, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "secret", "HOME": "/x"})
    assert env["working_dir"] == str(REPO) and "runs/" in env["excludes"]
    assert env["env_vars"] == {"RAY_AUTH_MODE": "token"}          # never the token itself
    assert stage_command("pretrain", "c.yaml", ["train.lr=1"], None, ["--x"]) == \
        ["bespoke", "pretrain", "--config", "c.yaml", "--set", "train.lr=1", "--x"]


def test_curation_job_succeeds_and_writes_parquet(client, tmp_path_factory):
    out = tmp_path_factory.mktemp("jobs")
    t = time.monotonic()
    # Per-document steps only: the dedup passes are tested in test_curation_*; here they would
    # only add Ray Data start-up time to a job test.
    job_id, status, code = _run_job(client, "curate", "--set", "demo.n_modules=20",
                                    "--set", "curate.steps=[extract,normalize,quality]",
                                    "--set", f"runs_dir={out}", "--name", "cur")
    logs = client.get_job_logs(job_id)
    assert (status, code) == ("SUCCEEDED", 0), logs[-3000:]
    assert list((out / "cur" / "curated" / "train").glob("*.parquet")), logs[-3000:]
    assert client.get_job_info(job_id).entrypoint.startswith("bespoke curate")
    print(f"curation job: {time.monotonic() - t:.0f} s")


def test_training_job_succeeds_and_writes_a_model(client, tmp_path_factory):
    out = tmp_path_factory.mktemp("jobs")
    _write_tokens(out / "tr")
    t = time.monotonic()
    job_id, status, code = _run_job(
        client, "pretrain", "--config", "configs/tiny.yaml", "--set", f"runs_dir={out}", "--name", "tr",
        "--set", "train.max_steps=8", "--set", "train.warmup_steps=2", "--set", "train.eval_every=4",
        "--set", "train.eval_tokens=2048", "--set", "train.num_workers=1")
    logs = client.get_job_logs(job_id)
    assert (status, code) == ("SUCCEEDED", 0), logs[-3000:]
    result = json.loads((out / "tr" / "train" / "result.json").read_text())
    assert Path(result["model_dir"]).is_dir() and np.isfinite(result["metrics"]["val_loss"])
    print(f"training job: {time.monotonic() - t:.0f} s")


def test_failing_job_is_reported_failed_with_its_exit_code(head, capsys):
    code = bespoke(["submit", "pretrain", "--set", "train.lr=-1", "--address", head.dashboard_url,
                    "--working-dir", str(REPO), "--wait"])
    out = capsys.readouterr()
    assert code == 2, out                                           # the config-error exit code
    assert "FAILED" in out.out and "ray job logs bespoke-pretrain-" in out.out
    assert "status: PENDING" in out.out or "status: RUNNING" in out.out
    assert "train.lr" in out.err                                    # the log tail names the bad key
