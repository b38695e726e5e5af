"""The epoch-exact loader over token shards (pipelines/training/data.py): every window once per
epoch in a seeded order, the same rows after a resume, also on another number of workers, the old
sampling with replacement kept as data_order=random, and shards in a bucket read by byte range.

    python -m pytest tests/test_token_loader.py -q          (seconds; the S3 test uses a local moto server)
"""
from __future__ import annotations

import types

import numpy as np
import pytest

from pipelines.tokenize import write_packed_tokens
from pipelines.token_shards import split_tokens
from pipelines.training.data import PackedTokens, permute

SEQ = 8
# Token ids 0..N-1 once each (no eos among them), so a row's first token names its window.
VOCAB = types.SimpleNamespace(vocab_size=2**16, eos_id=2**16 - 1)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    stream = np.arange(3001, dtype=np.uint16)
    write_packed_tokens(root, VOCAB, stream, np.arange(500, dtype=np.uint16), n_shards=3)
    return root


def _starts(data: PackedTokens, epoch: int, seed: int = 0) -> set[int]:
    """The first token of every window of an epoch (each shard cut at its offset + multiples of SEQ)."""
    out, base, offset = set(), 0, data.epoch_offset(seed, epoch)
    for shard in data.shards:
        out |= {base + offset + w * SEQ for w in range((shard.n_tokens - SEQ) // SEQ)}
        base += shard.n_tokens
    return out


def _step_rows(data: PackedTokens, step: int, world: int, accum: int, batch: int) -> list[int]:
    """First tokens of every row of one optimizer step, over ranks and micro-batches."""
    return [int(x[0]) for micro in range(accum) for rank in range(world)
            for x in data.batch(batch, 0, step, rank, micro)[0]]


def test_permutation_is_a_seeded_bijection_of_any_size():
    for n in (1, 2, 7, 1000, 4097):
        p = permute(np.arange(n), n, seed=3, epoch=0)
        assert sorted(p.tolist()) == list(range(n))
        assert (permute(np.arange(n), n, 3, 0) == p).all()                       # pure
    a, b, c = (permute(np.arange(1000), 1000, s, e) for s, e in ((3, 0), (3, 1), (4, 0)))
    assert (a != b).mean() > 0.9 and (a != c).mean() > 0.9                       # new order per epoch and seed
    assert abs(np.corrcoef(np.arange(1000), a)[0, 1]) < 0.1                      # shuffled, not shifted


def test_every_window_is_read_once_per_epoch_across_shards(shards):
    data = PackedTokens(shards, "train", SEQ)
    assert len(data.shards) == 3 and data.n_windows == sum((s.n_tokens - SEQ) // SEQ for s in data.shards)
    world, accum, batch = 2, 2, 3
    data.follow(world, accum, batch)
    per_step = world * accum * batch
    steps = 2 * data.n_windows // per_step + 1
    read = [r for step in range(steps) for r in _step_rows(data, step, world, accum, batch)]
    n = data.n_windows
    assert sorted(read[:n]) == sorted(_starts(data, 0))               # epoch 1: each window exactly once
    assert sorted(read[n:2 * n]) == sorted(_starts(data, 1))          # epoch 2: another cut, another order
    assert data.epoch_offset(0, 0) != data.epoch_offset(0, 1)
    assert len({data.epoch_offset(0, e) for e in range(20)}) > 3      # offsets vary over epochs
    x, y = data.batch(batch, 0, 5, 1, 1)
    assert x.shape == (batch, SEQ) and (x[:, 1:] == y[:, :-1]).all()  # targets are inputs shifted by one
    assert ((x[:, 1:] - x[:, :-1]) == 1).all()                        # one contiguous window, no shard crossed


def test_a_resume_reads_what_an_uninterrupted_run_reads_also_on_another_world_size(shards):
    full = PackedTokens(shards, "train", SEQ)
    full.follow(2, 1, 4)
    uninterrupted = [sorted(_step_rows(full, s, 2, 1, 4)) for s in range(40)]

    # Resumed at step 17 on 1 worker with twice the accumulation: the same global batch, same rows per step.
    same_global = PackedTokens(shards, "train", SEQ)
    same_global.follow(1, 2, 4, step0=17, rows0=full.rows_before(17))
    assert [sorted(_step_rows(same_global, s, 1, 2, 4)) for s in range(17, 40)] == uninterrupted[17:]

    # Resumed on 1 worker with the same per-worker batch: half the rows per step, the stream continues
    # where the checkpoint left it: nothing skipped, nothing read twice.
    halved = PackedTokens(shards, "train", SEQ)
    halved.follow(1, 1, 4, step0=17, rows0=full.rows_before(17))
    before = [r for s in range(17) for r in uninterrupted[s]]
    after = [r for s in range(17, 17 + 46) for r in _step_rows(halved, s, 1, 1, 4)]
    assert len(before) + len(after) == 40 * 8
    assert sorted(before + after) == sorted(r for s in range(40) for r in uninterrupted[s])
    assert halved.rows_before(17 + 46) == full.rows_before(40)


def test_random_order_samples_with_replacement_as_before(shards, tmp_path):
    flat = np.arange(3001, dtype=np.uint16)
    write_packed_tokens(tmp_path, VOCAB, flat, flat[:100])
    data = PackedTokens(tmp_path, "train", SEQ, order="random")
    x, y = data.batch(16, seed=1, step=3, rank=1, micro=0)
    starts = np.random.default_rng([1, 3, 1, 0]).integers(0, len(flat) - SEQ - 1, size=16)   # the old formula
    assert (x[:, 0].numpy() == starts).all() and (y[:, -1].numpy() == starts + SEQ).all()
    sharded = PackedTokens(shards, "train", SEQ, order="random")
    rows = sharded.batch(64, 0, 0, 0)[0]
    assert ((rows[:, 1:] - rows[:, :-1]) == 1).all()                  # never across a shard boundary
    with pytest.raises(ValueError, match="data_order"):
        PackedTokens(shards, "train", SEQ, order="sorted")


def test_val_windows_ignore_batch_and_world_size_and_span_shards(shards):
    val = PackedTokens(shards, "val", SEQ)

    def windows(batch_size, world):
        return sorted(int(r[0]) for rank in range(world) for x, _ in val.val_batches(batch_size, 400, rank, world) for r in x)
    assert windows(4, 1) == windows(16, 2) == windows(3, 3) == list(range(0, 400, SEQ))


def test_shards_in_a_bucket_are_read_by_range_and_match_local(s3_server, shards, tmp_path):
    from pipelines.curation import store

    s3_server.bucket("loader")
    local = PackedTokens(shards, "train", SEQ)
    write_packed_tokens("s3://loader/tokens", VOCAB, split_tokens(shards, "train"), split_tokens(shards, "val"),
                        n_shards=3)
    assert store.exists("s3://loader/tokens/train/shard-00002.bin")
    remote = PackedTokens("s3://loader/tokens", "train", SEQ)
    assert remote.shards[0].remote and remote.n_windows == local.n_windows
    for step in (0, 9):
        for a, b in zip(local.batch(6, 2, step, 0), remote.batch(6, 2, step, 0)):
            assert (a == b).all()
    import pickle
    again = pickle.loads(pickle.dumps(remote))                       # what Ray ships to a worker: no handles
    assert (again.batch(6, 2, 9, 0)[0] == local.batch(6, 2, 9, 0)[0]).all()


@pytest.fixture(scope="module")
def sourced(tmp_path_factory):
    """Three train shards of 2,000 distinct tokens from sources web, web and code (as tokenize
    records them per shard), and a val shard."""
    import json

    from pipelines.token_shards import write_manifest, write_shard

    root = str(tmp_path_factory.mktemp("sourced"))
    write = {"vocab_size": VOCAB.vocab_size, "dtype": "uint16", "eos_id": VOCAB.eos_id}
    train = [write_shard(root, "train", i, [(np.arange(i * 2000, (i + 1) * 2000, dtype=np.uint16), 0)],
                         datasets=[name], **write) for i, name in enumerate(["web", "web", "code"])]
    val = [write_shard(root, "val", 0, [(np.arange(100, dtype=np.uint16), 0)], datasets=["web"], **write)]
    write_manifest(root, {"train": train, "val": val}, "uint16")
    with open(f"{root}/meta.json", "w") as f:
        json.dump({"dtype": "uint16", "eos_id": VOCAB.eos_id, "vocab_size": VOCAB.vocab_size}, f)
    return root


def _epoch_sources(data: PackedTokens, epoch: int) -> list[int]:
    """The shard of every row of one whole epoch, read through the loader (one rank, batch 50)."""
    data.follow(world=1, grad_accum=1, batch_size=50)
    steps = data.n_windows // 50
    return [int(x[0]) // 2000 for step in range(epoch * steps, (epoch + 1) * steps)
            for x in data.batch(50, 0, step, 0)[0]]


def test_source_weights_mix_at_read_time(sourced):
    """code x 2.5, web x 0.5: an epoch holds each code window twice plus half of them once more,
    and half of the web windows, a different half each epoch; validation is not weighted."""
    plain = PackedTokens(sourced, "train", SEQ, order="epoch")
    mixed = PackedTokens(sourced, "train", SEQ, order="epoch", source_weights={"code": 2.5, "web": 0.5})
    per_shard = (2000 - SEQ) // SEQ                                       # 249 windows per shard
    assert plain.n_windows == 3 * per_shard
    assert mixed.n_windows == 2 * round(0.5 * per_shard) + round(2.5 * per_shard)
    mixed.follow(world=1, grad_accum=1, batch_size=1)
    rows = [mixed.windows_of(0, np.arange(e * mixed.n_windows, (e + 1) * mixed.n_windows)) for e in (0, 1)]
    for shard, start in rows:
        counts = np.bincount(shard, minlength=3)
        assert counts.tolist() == [round(0.5 * per_shard)] * 2 + [round(2.5 * per_shard)]
        code = np.unique(start[shard == 2], return_counts=True)[1]
        assert sorted(set(code.tolist())) == [2, 3] and (code == 3).sum() == round(2.5 * per_shard) - 2 * per_shard
        for s in (0, 1):                                                  # a window at most once per epoch
            assert len(set(start[shard == s].tolist())) == (shard == s).sum()
    web = [set(start[shard == 0].tolist()) - {min(start[shard == 0])} for shard, start in rows]
    assert len(web[0] ^ web[1]) > 0.3 * per_shard                         # another half next epoch
    again = PackedTokens(sourced, "train", SEQ, order="epoch", source_weights={"code": 2.5, "web": 0.5})
    again.follow(world=1, grad_accum=1, batch_size=1)
    assert (again.windows_of(0, np.arange(mixed.n_windows))[1] == rows[0][1]).all()   # pure: resumes exactly
    unit = PackedTokens(sourced, "train", SEQ, order="epoch", source_weights={"code": 1.0})
    assert unit.weighted_ends is None and unit.n_windows == plain.n_windows   # all 1: the unweighted stream
    val = PackedTokens(sourced, "val", SEQ, source_weights={"code": 2.5, "web": 0.5})
    assert val.weighted_ends is None                                      # validation is never weighted
    drawn = PackedTokens(sourced, "train", SEQ, order="random", source_weights={"code": 2.5, "web": 0.5})
    firsts = np.concatenate([drawn.batch(200, 0, step, 0)[0][:, 0].numpy() // 2000 for step in range(10)])
    share = np.bincount(firsts, minlength=3) / len(firsts)
    assert share[2] == pytest.approx(2.5 / 3.5, abs=0.05) and share[0] == pytest.approx(0.5 / 3.5, abs=0.05)


def test_source_weights_reach_the_loader_from_the_train_config(sourced):
    """train.source_weights in the run config -> the loop config every worker gets -> the loader."""
    import dataclasses

    from pipelines.training.config import TrainConfig
    from pipelines.training.sources import open_split

    train = dataclasses.asdict(TrainConfig(data_order="epoch", source_weights={"code": 2.5, "web": 0.5}))
    data = open_split({"tokens_dir": sourced, "train": train}, "train", SEQ)
    assert data.n_windows == 2 * round(0.5 * 249) + round(2.5 * 249)


@pytest.mark.parametrize("weights, message", [
    ({"books": 2.0}, "no train shard holds source 'books'; the sources are \\['code', 'web'\\]"),
    ({"web": 0.0, "code": 0.0}, "every source has weight 0"),
])
def test_source_weights_errors_name_the_fix(sourced, weights, message):
    with pytest.raises(ValueError, match="^train.source_weights: " + message):
        PackedTokens(sourced, "train", SEQ, order="epoch", source_weights=weights)


def test_source_weights_need_shards_that_record_their_sources(shards, tmp_path):
    import json
    import shutil

    with pytest.raises(ValueError, match="record no source names"):                  # no `source` column
        PackedTokens(shards, "train", SEQ, source_weights={"web": 2.0})
    older = tmp_path / "older"
    shutil.copytree(shards, older)
    manifest = json.loads((older / "manifest.json").read_text())
    for entries in manifest["splits"].values():
        for e in entries:
            e.pop("datasets")
    (older / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="packed by an older version\): run `bespoke tokenize` again"):
        PackedTokens(older, "train", SEQ, source_weights={"web": 2.0})
