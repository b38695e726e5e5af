"""Curation with object storage in and out, against a local S3-compatible server (moto, started
by the `s3_server` fixture on 127.0.0.1): `bespoke curate --input s3://raw/.../warc.paths.gz
--output s3://curated/run` in a subprocess (its own embedded Ray, whose workers get the AWS
environment), the Common Crawl-style manifest expanded against its bucket; the output equals a
local run's; then, with some parts' markers and everything after them removed from the bucket,
the same command resumes and redoes only those parts.

    RAY_AUTH_MODE=disabled python -m pytest tests/test_curation_s3.py -q   (about 2 minutes)
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.curation import CurateConfig, build_demo_warc, run_curation

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
SETTINGS = {"val_fraction": 0.2, "seed": 5}


def _curate(s3, inputs: str, output: str, tmp: Path) -> dict:
    sets = [f"curate.{k}={v}" for k, v in SETTINGS.items()] + [f"runs_dir={tmp / 'runs'}"]
    cmd = [sys.executable, "-m", "pipelines.cli", "curate", "--input", inputs, "--output", output,
           *[a for s in sets for a in ("--set", s)]]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(s3.client.get_object(Bucket="curated", Key="run/report.json")["Body"].read())


def _download(s3, bucket: str, prefix: str, dest: Path) -> Path:
    for page in s3.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("/"):   # a folder marker written by pyarrow
                continue
            path = dest / obj["Key"][len(prefix):].lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(s3.client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
    return dest


def _delete(s3, bucket: str, keys: list[str]) -> None:
    for key in keys:
        s3.client.delete_object(Bucket=bucket, Key=key)


def _keys(s3, bucket: str, prefix: str) -> list[str]:
    pages = s3.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_manifest_in_bucket_out_and_resume_against_s3(ray_session, s3_server, tmp_path, curated_outputs):
    warc = tmp_path / "demo.warc.gz"
    build_demo_warc(str(warc), seed=4, n_modules=12)
    run_curation(CurateConfig(**SETTINGS), [str(warc)], str(tmp_path / "local"), progress=lambda s: None)
    reference = curated_outputs(tmp_path / "local")

    s3_server.bucket("raw"), s3_server.bucket("curated")
    key = "crawl-data/CC-TEST/segments/1/warc/demo.warc.gz"
    s3_server.client.put_object(Bucket="raw", Key=key, Body=warc.read_bytes())
    s3_server.client.put_object(Bucket="raw", Key="crawl-data/CC-TEST/warc.paths.gz",
                                Body=gzip.compress(f"{key}\n".encode()))

    report = _curate(s3_server, "s3://raw/crawl-data/CC-TEST/warc.paths.gz", "s3://curated/run", tmp_path)
    assert report["inputs"] == [f"s3://raw/{key}"] and report["parts_skipped"] == 0
    assert curated_outputs(_download(s3_server, "curated", "run", tmp_path / "first")) == reference

    # As after a kill in the per-document phase: 4 parts unfinished, nothing after the phase.
    markers = [k for k in _keys(s3_server, "curated", "run/parts/") if k.endswith(".done.json")]
    assert len(markers) == 16
    _delete(s3_server, "curated", markers[:4] + [k for sub in ("dedup", "final", "train", "val", "rejected")
                                                 for k in _keys(s3_server, "curated", f"run/{sub}/")]
            + [k for k in _keys(s3_server, "curated", "run/dedup")])
    _delete(s3_server, "curated", ["run/report.json"])
    report = _curate(s3_server, "s3://raw/crawl-data/CC-TEST/warc.paths.gz", "s3://curated/run", tmp_path)
    assert report["parts_skipped"] == 12
    assert curated_outputs(_download(s3_server, "curated", "run", tmp_path / "resumed")) == reference
    # Only the redone parts' attempt files changed; no stale attempt file is left.
    assert len([k for k in _keys(s3_server, "curated", "run/parts/") if k.endswith(".sigs.parquet")]) == 16
