"""Pretraining with everything on object storage, against a local S3-compatible server (moto, the
`s3_server` fixture on 127.0.0.1): token shards in a bucket (read by byte range in the Ray Train
workers) and Ray Train checkpoints in a bucket (`train.storage_path=s3://...`). A worker killed
mid-run restarts from the checkpoint in the bucket and ends where the uninterrupted run ends; a new
run with `train.resume_from=s3://.../checkpoint_...` continues the uninterrupted run exactly.

    RAY_AUTH_MODE=disabled python -m pytest tests/test_training_s3.py -q     (about 3 minutes)

The runs go in a subprocess with its own embedded Ray, started after the fixture set the AWS
environment, so that every Ray worker sees the server.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent

SCRIPT = """
import dataclasses, json, sys
from cluster import connect
from modeling.config import ModelConfig
from pipelines.curation import store
from pipelines.training.config import TrainConfig
from pipelines.training.trainer import run_pretrain

tokens, tokenizer, out, marker = sys.argv[1:5]
connect(num_cpus=2)
model = ModelConfig(d_model=64, n_layers=2, n_heads=4, max_seq_len=32, dropout=0.1)
base = TrainConfig(seq_len=32, batch_size=8, max_steps=20, warmup_steps=2, eval_every=10, log_every=10,
                   eval_tokens=2048, num_workers=1, max_failures=1, storage_path="s3://ckpt/runs")

def run(name, cfg, fault=None):
    r = run_pretrain(model, cfg, tokens, tokenizer, out, name=name, fault_injection=fault)
    history = [json.loads(line) for line in open(r.history_path)]
    return {"metrics": r.metrics, "checkpoint": r.checkpoint_dir, "model_dir": r.model_dir,
            "steps": [h["step"] for h in history]}

whole = run("whole", base)
crashed = run("crashed", base, {"step": 15, "rank": 0, "marker": marker, "delay_s": 3})
states = [u for u in store.list_files("s3://ckpt/runs/whole", "state.json")]
step10 = next(u.rsplit("/", 1)[0] for u in states if json.loads(store.read_bytes(u))["step"] == 10)
resumed = run("resumed", dataclasses.replace(base, resume_from=step10))
print("RESULT " + json.dumps({"whole": whole, "crashed": crashed, "resumed": resumed, "step10": step10}))
"""


def test_checkpoints_and_tokens_in_a_bucket_survive_a_killed_worker_and_resume(s3_server, tmp_path):
    from modeling.tokenizer import Tokenizer
    from pipelines.tokenize import write_packed_tokens
    from conftest import stdlib_docs

    docs = stdlib_docs()
    tok = Tokenizer.train(docs, vocab_size=400)
    tok.save(tmp_path / "tokenizer")
    ids = np.array([i for doc in docs for i in tok.encode(doc) + [tok.eos_id]], dtype=np.uint16)
    s3_server.bucket("ckpt")
    split = int(len(ids) * 0.9)
    write_packed_tokens("s3://ckpt/tokens", tok, ids[:split], ids[split:], n_shards=3)

    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    marker = tmp_path / "killed.txt"
    done = subprocess.run([sys.executable, "-c", SCRIPT, "s3://ckpt/tokens", str(tmp_path / "tokenizer"),
                           str(tmp_path / "out"), str(marker)],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    r = json.loads(done.stdout.split("RESULT ", 1)[1])
    whole, crashed, resumed = r["whole"], r["crashed"], r["resumed"]

    assert marker.exists()                                             # the worker really died
    assert whole["checkpoint"].startswith("ckpt/runs/whole/checkpoint_")  # Ray Train's URI, in the bucket
    keys = [o["Key"] for o in s3_server.client.list_objects_v2(Bucket="ckpt", Prefix="runs/crashed/")["Contents"]]
    assert any(k.endswith("/state.json") for k in keys) and any(k.endswith(".distcp") for k in keys)
    assert Path(whole["model_dir"], "config.json").is_file()           # the best model copied back here
    # The killed run restarted from its step-10 checkpoint in the bucket (no step logged twice).
    assert crashed["steps"] == [10, 20] and crashed["metrics"]["step"] == 20
    assert crashed["metrics"]["val_loss"] == pytest.approx(whole["metrics"]["val_loss"], abs=1e-4)
    # resume_from an s3:// checkpoint: steps 11-20 again, on the same worker count: the same run.
    assert resumed["steps"] == [20]
    assert resumed["metrics"]["val_loss"] == pytest.approx(whole["metrics"]["val_loss"], abs=1e-4)
    assert resumed["metrics"]["loss"] == pytest.approx(whole["metrics"]["loss"], abs=1e-4)
