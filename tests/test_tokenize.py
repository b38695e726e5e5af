"""Tokenize stage on Ray Data: BPE training, packing with document boundaries, unigram baseline."""
from __future__ import annotations

import inspect
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modeling.tokenizer import Tokenizer
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


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    root = tmp_path_factory.mktemp("curated")
    docs = _docs()
    for split, part in (("train", docs[:-10]), ("val", docs[-10:])):
        (root / split).mkdir()
        table = pa.table({"id": [f"{split}{i}" for i in range(len(part))], "text": part})
        pq.write_table(table, root / split / "part-0.parquet")
    return root, docs


def test_packs_every_document_with_eos_boundaries(ray_session, curated, tmp_path):
    root, docs = curated
    meta = run_tokenize(TokenizeConfig(vocab_size=600), root, tmp_path / "tokenizer", tmp_path / "tokens",
                        progress=lambda _: None)
    tok = Tokenizer.load(tmp_path / "tokenizer")
    assert meta["vocab_size"] == tok.vocab_size == 600
    val = np.fromfile(tmp_path / "tokens" / "val.bin", dtype=meta["dtype"])
    train = np.fromfile(tmp_path / "tokens" / "train.bin", dtype=meta["dtype"])
    assert meta["train"]["tokens"] == len(train) and meta["val"]["docs"] == 10
    # Splitting the packed stream at eos gives back exactly the documents, in order.
    pieces = np.split(val, np.flatnonzero(val == tok.eos_id) + 1)[:-1]
    assert [tok.decode(p[:-1].tolist()) for p in pieces] == docs[-10:]
    assert meta["unigram_val_loss"] == pytest.approx(unigram_cross_entropy(train, val, tok.vocab_size))
    assert meta["chars_per_token"] > 2.0                                # BPE merges did compress


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
