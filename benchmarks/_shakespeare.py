"""Tiny Shakespeare as a byte-level tokens/ folder, the way the tokenize stage writes one.

Used by benchmarks/cpu_throughput.py and benchmarks/shakespeare_speedrun.py. The last 10% of the
file is the validation split (nanoGPT's split); with a byte-level vocabulary (256 bytes plus the
special tokens, no merges) one token is one character, so loss is in nats per character.
"""
from __future__ import annotations

from pathlib import Path

from modeling.tokenizer import Tokenizer
from pipelines.tokenize import write_packed_tokens

SHAKESPEARE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "text" / "tinyshakespeare.txt"


def shakespeare_tokens(work_dir: str | Path, text_path: str | Path = SHAKESPEARE) -> Path:
    """Write <work_dir>/tokenizer and <work_dir>/tokens (train.bin, val.bin, meta.json); returns work_dir."""
    work_dir = Path(work_dir)
    text = Path(text_path).read_text(encoding="utf-8")
    split = int(len(text) * 0.9)
    tok = Tokenizer.train([text[:split]], vocab_size=256)        # bytes + specials only: no merges
    tok.save(work_dir / "tokenizer")
    train, val = (tok.encode(part) for part in (text[:split], text[split:]))
    assert len(train) == split, "byte-level tokenizer must give one token per ASCII character"
    write_packed_tokens(work_dir / "tokens", tok, train, val,
                        train={"tokens": len(train), "chars": split}, val={"tokens": len(val), "chars": len(text) - split})
    return work_dir
