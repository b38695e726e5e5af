"""Shared test fixtures: one Ray instance per test session, and paths to the shared real data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# Tests use an embedded Ray; never pick up a cluster address from the environment.
os.environ.pop("RAY_ADDRESS", None)
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def ray_session():
    """Start Ray once for the whole test session (ray.init costs ~10 s here)."""
    import ray

    from cluster import connect

    connect(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public data in ../shared/data; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's model tests on one torch thread (the 2 cores are shared), then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def stdlib_docs() -> list[str]:
    """Real English + code text without external files: docstrings of a few stdlib modules."""
    import collections
    import inspect
    import json as json_mod
    import os
    import re
    import textwrap

    texts = []
    for module in (os, json_mod, re, collections, textwrap):
        texts.append(inspect.getdoc(module) or "")
        for _, obj in inspect.getmembers(module):
            doc = inspect.getdoc(obj)
            if doc and (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
                texts.append(doc)
    return [t for t in texts if t]


@pytest.fixture(scope="module")
def docs() -> list[str]:
    texts = stdlib_docs()
    assert sum(map(len, texts)) > 50_000
    return texts


@pytest.fixture(scope="module")
def tok(docs):
    """A BPE tokenizer (vocab 800) trained on the stdlib docs; modules may define their own `tok`."""
    from modeling.tokenizer import Tokenizer

    return Tokenizer.train(docs, vocab_size=800)


@pytest.fixture(scope="session")
def s3_server():
    """A local S3-compatible server (moto) on 127.0.0.1 for the session, with the standard AWS
    environment pointed at it (AWS_ENDPOINT_URL, fake keys, us-east-1; restored afterwards).
    Yields an object with `.endpoint`, `.port`, `.client` (boto3) and `.bucket(name)` (creates
    it if needed, returns the name). Skips when moto is not installed (the dev extra)."""
    pytest.importorskip("moto.server")
    import types

    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    drop = ("AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION")
    saved = {k: os.environ.get(k) for k in (*env, *drop)}
    os.environ.update(env)
    for k in drop:
        os.environ.pop(k, None)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    made: set[str] = set()

    def bucket(name: str) -> str:
        if name not in made:
            client.create_bucket(Bucket=name)
            made.add(name)
        return name

    try:
        yield types.SimpleNamespace(endpoint=endpoint, host=host, port=port, client=client, bucket=bucket)
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def curated_outputs():
    """outputs(folder): what a user gets from a curation output folder, for comparing two runs:
    train/val rows (id, text), rejected (id, status) and the report's counts."""
    import json

    import pyarrow.parquet as pq

    def outputs(folder) -> dict:
        def rows(split, cols):
            return sorted(tuple(r[c] for c in cols) for f in sorted((folder / split).glob("*.parquet"))
                          for r in pq.read_table(f, columns=list(cols)).to_pylist())

        report = json.loads((folder / "report.json").read_text())
        keys = ("input_docs", "kept_docs", "dropped_docs", "errored_docs", "train_docs", "val_docs", "dropped",
                "errors", "steps", "pii_replacements", "train_rows_by_source")
        return {"train": rows("train", ("id", "text")), "val": rows("val", ("id", "text")),
                "rejected": rows("rejected", ("id", "status")), **{k: report[k] for k in keys}}

    return outputs
