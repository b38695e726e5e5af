"""Training data sources by kind: the loop asks for a split and gets an object with the data interface.

    data = open_split(loop_config, "train", seq_len)
    batch = data.batch(batch_size, seed, step, rank, micro); loss, n = data.loss(model, batch, device, loss_fn)

Kinds (loop_config["data"]["kind"]; absent means "packed"):
  packed        the tokenize stage's token shards, local or on object storage (pipelines/training/data.py)
  instructions  chat-formatted jsonl, loss on the responses only (pipelines/training/instructions.py);
                data: {"paths", "format", "val_fraction", "seed", "packing"}, tokenizer from "tokenizer_dir"
  pairs         (source, target) jsonl for the encoder-decoder, loss on the target (pipelines/training/pairs.py);
                named by tokens_dir/meta.json ("kind": "pairs", written by pairs.prepare_pairs), or
                data: {"kind": "pairs", "pairs": {...}}
Without a "data" entry the kind is the one tokens_dir/meta.json records ("packed" if none).
Each kind implements batch(...), val_batches(...) and loss(...) as PackedTokens documents; loss_fn
(default modeling.transformer.lm_loss) is what the parallelize step hands over, compiled or not.
"""
from __future__ import annotations

from pipelines.training.data import PackedTokens


def open_split(config: dict, split: str, seq_len: int):
    """The data source for `split` ("train" or "val") described by the loop config."""
    data = config.get("data") or _tokens_meta(config)
    kind = data.get("kind", "packed")
    if kind == "packed":
        train = config.get("train", {})
        return PackedTokens(config["tokens_dir"], split, seq_len, document_mask=train.get("document_mask", False),
                            order=train.get("data_order", "epoch"), source_weights=train.get("source_weights"))
    if kind == "instructions":
        from pipelines.training.instructions import InstructionData

        return InstructionData(data["paths"], split, seq_len, config["tokenizer_dir"], data.get("format", "auto"),
                               data.get("val_fraction", 0.1), data.get("seed", 0), data.get("packing", False))
    if kind == "pairs":
        from pipelines.training.pairs import PairData

        return PairData(data["pairs"], split, seq_len, config["tokenizer_dir"])
    raise ValueError(f"data.kind: unknown {kind!r}; choose 'packed', 'instructions' or 'pairs'")


def _tokens_meta(config: dict) -> dict:
    """tokens_dir/meta.json, which says what the tokenize step wrote (no "kind": packed tokens)."""
    from pipelines.curation import store
    from pipelines.token_shards import read_meta

    tokens_dir = str(config.get("tokens_dir") or ".")
    return read_meta(tokens_dir) if store.exists(store.join(tokens_dir, "meta.json")) else {}
