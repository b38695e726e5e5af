"""Tokenize stage on Ray Data: BPE training, one shard per curated file with document boundaries,
a manifest of counts, the unigram baseline from the shards' histograms, resume, object storage.

    RAY_AUTH_MODE=disabled python -m pytest tests/test_tokenize.py -q
"""
from __future__ import annotations

import inspect
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modeling.tokenizer import Tokenizer
from pipelines.token_shards import document_ends, split_tokens
from pipelines.tokenize import TokenizeConfig, run_tokenize, unigram_cross_entropy


def _docs() -> list[str]:
    import argparse, collections, json as json_mod, os, re  # noqa: E401  real text on every machine

    docs = []
    for module in (argparse, collections, json_mod, os, re):
        for _, obj in inspect.getmembers(module):
            doc = inspect.getdoc(obj)
            if doc and len(doc) > 200 and (inspect.isfunction(obj) or inspect.isclass(obj)):
                docs.append(doc)
    return docs


N_TRAIN_PARTS = 4


def _write_curated(root, docs):
    """Curation's layout: train/part-NNNNN.parquet and val/part-NNNNN.parquet, several parts."""
    parts = {"train": np.array_split(np.arange(len(docs) - 10), N_TRAIN_PARTS),
             "val": np.array_split(np.arange(len(docs) - 10, len(docs)), 2)}
    for split, pieces in parts.items():
        for i, rows in enumerate(pieces):
            source = "code" if split == "train" and i % 2 else "web"       # curation's per-input source name
            table = pa.table({"id": [f"{split}{r}" for r in rows], "text": [docs[r] for r in rows],
                              "source": [source] * len(rows)})
            path = f"{root}/{split}/part-{i:05d}.parquet"
            (root / split).mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path, row_group_size=7)       # several row groups per file
    return root


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    docs = _docs()
    return _write_curated(tmp_path_factory.mktemp("curated"), docs), docs


@pytest.fixture(scope="module")
def packed(ray_session, curated, tmp_path_factory):
    root, docs = curated
    out = tmp_path_factory.mktemp("packed")
    lines: list[str] = []
    meta = run_tokenize(TokenizeConfig(vocab_size=600), root, out / "tokenizer", out / "tokens", progress=lines.append)
    return out, meta, lines


def test_packs_every_file_into_its_own_shard_with_document_boundaries(curated, packed):
    root, docs = curated
    out, meta, _ = packed
    tok = Tokenizer.load(out / "tokenizer")
    assert meta["vocab_size"] == tok.vocab_size == 600 and meta["layout"] == "shards"
    manifest = json.loads((out / "tokens" / "manifest.json").read_text())
    assert [e["name"] for e in manifest["splits"]["train"]] == [f"train/shard-{i:05d}" for i in range(N_TRAIN_PARTS)]
    assert [e["source"] for e in manifest["splits"]["val"]] == sorted(str(p) for p in (root / "val").glob("*.parquet"))
    assert [e["datasets"] for e in manifest["splits"]["train"]] == [["web"], ["code"], ["web"], ["code"]]  # for mixing
    assert meta["train"]["shards"] == N_TRAIN_PARTS and meta["val"]["shards"] == 2 and meta["val"]["docs"] == 10
    assert meta["train"]["docs"] == len(docs) - 10
    train, val = split_tokens(out / "tokens", "train"), split_tokens(out / "tokens", "val")
    assert meta["train"]["tokens"] == len(train) == sum(e["tokens"] for e in manifest["splits"]["train"])
    # Splitting the packed stream at eos gives back exactly the documents, in order, across shards.
    pieces = np.split(val, np.flatnonzero(val == tok.eos_id) + 1)[:-1]
    assert [tok.decode(p[:-1].tolist()) for p in pieces] == docs[-10:]
    # Each shard's index holds its documents' end offsets.
    for entry in manifest["splits"]["train"]:
        tokens = np.fromfile(out / "tokens" / f"{entry['name']}.bin", dtype=meta["dtype"])
        ends = document_ends(out / "tokens", entry["name"])
        assert len(ends) == entry["docs"] and ends[-1] == len(tokens) == entry["tokens"]
        assert (tokens[ends - 1] == tok.eos_id).all() and (tokens == tok.eos_id).sum() == entry["docs"]
    # The baseline from the shards' histograms equals the one from every token.
    assert meta["unigram_val_loss"] == pytest.approx(unigram_cross_entropy(train, val, tok.vocab_size), rel=1e-12)
    assert meta["chars_per_token"] > 2.0                                # BPE merges did compress


def test_a_rerun_keeps_the_tokenizer_and_redoes_only_unfinished_shards(curated, packed, tmp_path):
    import shutil

    root, _ = curated
    out, meta, _ = packed
    work = tmp_path / "rerun"
    shutil.copytree(out, work)
    tokens = work / "tokens"
    before = {p.name: p.stat().st_mtime_ns for p in (tokens / "train").iterdir()}
    # As after a kill: shard 2 has no marker (its .bin half written), shard 3 nothing at all.
    (tokens / "train" / "shard-00002.done.json").unlink()
    (tokens / "train" / "shard-00002.bin").write_bytes(b"\x01\x00")
    for p in (tokens / "train").glob("shard-00003.*"):
        p.unlink()
    lines: list[str] = []
    again = run_tokenize(TokenizeConfig(vocab_size=600), root, work / "tokenizer", tokens, progress=lines.append)
    assert any("keeping its tokenizer" in line for line in lines)
    assert again["shards_skipped"] == N_TRAIN_PARTS - 2 + 2                 # 2 train + 2 val kept
    after = {p.name: p.stat().st_mtime_ns for p in (tokens / "train").iterdir()}
    assert after["shard-00000.bin"] == before["shard-00000.bin"]            # finished: not rewritten
    assert after["shard-00002.bin"] != before["shard-00002.bin"]
    for split in ("train", "val"):
        assert (split_tokens(tokens, split) == split_tokens(out / "tokens", split)).all()
    keys = ("train", "val", "unigram_val_loss", "chars_per_token")
    assert {k: again[k] for k in keys} == {k: meta[k] for k in keys}
    # A changed config trains a new tokenizer and packs every shard again.
    changed = run_tokenize(TokenizeConfig(vocab_size=700), root, work / "tokenizer", tokens, progress=lines.append)
    assert changed["shards_skipped"] == 0 and changed["vocab_size"] == 700


def test_unigram_cross_entropy_matches_a_hand_computation():
    train = np.array([0, 0, 1, 2])
    val = np.array([0, 1])
    # add-one smoothing over a vocabulary of 4: counts 3,2,2,1 over 8
    expected = -(math.log(3 / 8) + math.log(2 / 8)) / 2
    assert unigram_cross_entropy(train, val, 4) == pytest.approx(expected)


def test_missing_curated_data_names_the_stage_to_run(ray_session, tmp_path):
    with pytest.raises(FileNotFoundError, match="bespoke curate"):
        run_tokenize(TokenizeConfig(), tmp_path, tmp_path / "tok", tmp_path / "tokens", progress=lambda _: None)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="^vocab_size"):
        TokenizeConfig(vocab_size=10)


@pytest.mark.slow
def test_cli_packs_from_a_bucket_into_a_bucket_and_reads_back_by_range(s3_server, curated, packed, tmp_path):
    """`bespoke tokenize --set curated_dir=s3://... --set tokens_dir=s3://...` twice, as a user types
    it (its own process and Ray, whose workers see the moto server's environment): the second run
    resumes, and the shards in the bucket equal a local run's."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root, _ = curated
    out, meta, _ = packed
    s3_server.bucket("cur"), s3_server.bucket("tok")
    for path in sorted(root.rglob("*.parquet")):
        s3_server.client.put_object(Bucket="cur", Key=f"run/{path.relative_to(root)}", Body=path.read_bytes())
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "pipelines.cli", "tokenize", "--name", "bucket",
               "--set", f"runs_dir={tmp_path}", "--set", "tokenize.vocab_size=600", "--set", "num_cpus=2",
               "--set", "curated_dir=s3://cur/run", "--set", "tokens_dir=s3://tok/t/"]

    def tokenize() -> dict:
        done = subprocess.run(command, env=env, cwd=Path(__file__).resolve().parent.parent, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return json.loads(s3_server.client.get_object(Bucket="tok", Key="t/meta.json")["Body"].read())

    first, again = tokenize(), tokenize()
    assert first["shards_skipped"] == 0 and again["shards_skipped"] == N_TRAIN_PARTS + 2   # the rerun resumed
    keys = ("train", "val", "unigram_val_loss", "vocab_size")
    assert {k: first[k] for k in keys} == {k: meta[k] for k in keys}
    tokenizer = tmp_path / "bucket" / "tokenizer" / "tokenizer.json"      # the tokenizer stays in the run folder
    assert tokenizer.read_text() == (out / "tokenizer" / "tokenizer.json").read_text()
    assert not (tmp_path / "bucket" / "tokens").exists() and not (tmp_path / "bucket" / "curated").exists()
    keys_in_bucket = {o["Key"] for o in s3_server.client.list_objects_v2(Bucket="tok", Prefix="t/")["Contents"]}
    assert {"t/manifest.json", "t/meta.json", "t/train/shard-00003.bin", "t/val/shard-00001.done.json"} <= keys_in_bucket
    from pipelines.evaluation.tasks import read_documents      # evaluation reads curated val from the bucket too

    assert read_documents("s3://cur/run") == read_documents(root)
    for split in ("train", "val"):          # remote shards read by byte range equal the local run's
        assert (split_tokens("s3://tok/t", split) == split_tokens(out / "tokens", split)).all()
