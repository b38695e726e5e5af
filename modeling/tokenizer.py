"""Byte-level BPE tokenizer on Hugging Face `tokenizers`, with the special tokens the models use.

    tok = Tokenizer.train(texts, vocab_size=4096)
    ids = tok.encode("hello")      # list[int]; tok.decode(ids) == "hello"
    tok.save("runs/demo/tokenizer"); Tokenizer.load("runs/demo/tokenizer")

Byte-level means every Unicode string is representable: no unknown token, lossless round trip.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

BOS, EOS, PAD = "<|bos|>", "<|endoftext|>", "<|pad|>"
SPECIAL_TOKENS = [EOS, BOS, PAD]
FILE_NAME = "tokenizer.json"


class Tokenizer:
    """A thin wrapper over a `tokenizers.Tokenizer` that knows its bos/eos/pad ids."""

    def __init__(self, hf: HFTokenizer) -> None:
        self.hf = hf
        # Text that spells a special token ("<|endoftext|>") is encoded as ordinary bytes, never as the
        # special id: otherwise decode drops it and a document could forge an end-of-text boundary.
        self.hf.encode_special_tokens = True
        self.eos_id = self._id(EOS)
        self.bos_id = self._id(BOS)
        self.pad_id = self._id(PAD)

    def _id(self, token: str) -> int:
        idx = self.hf.token_to_id(token)
        if idx is None:
            raise ValueError(f"tokenizer has no special token {token!r}")
        return idx

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> "Tokenizer":
        """Learn byte-level BPE merges from `texts` (an iterator is streamed, not held in memory)."""
        hf = HFTokenizer(models.BPE())
        # add_prefix_space=False keeps encode/decode an exact inverse on arbitrary strings.
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        hf.train_from_iterator(texts, trainer=trainer)
        return cls(hf)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.hf.save(str(path / FILE_NAME))
        return path / FILE_NAME

    @classmethod
    def load(cls, directory: str | Path) -> "Tokenizer":
        path = Path(directory)
        return cls(HFTokenizer.from_file(str(path / FILE_NAME if path.is_dir() else path)))
