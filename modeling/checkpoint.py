"""Save and load a model folder: `model.safetensors`, `config.json`, and the tokenizer beside them.

    save_model("ckpt/", model, tokenizer)
    model, tokenizer = load_model("ckpt/")

Weights are safetensors, never pickle, so a checkpoint from an untrusted source cannot run code.
"""
from __future__ import annotations

import json
from pathlib import Path

import safetensors.torch

from modeling.config import ModelConfig
from modeling.encoder_decoder import build_model
from modeling.tokenizer import FILE_NAME as TOKENIZER_FILE
from modeling.tokenizer import Tokenizer
from modeling.transformer import Transformer

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def save_model(directory: str | Path, model: Transformer, tokenizer: Tokenizer | None = None) -> Path:
    """Write weights, config (and tokenizer) to `directory`; tied weights are stored once."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_model(model, str(path / WEIGHTS_FILE))
    (path / CONFIG_FILE).write_text(json.dumps({"model": model.cfg.to_dict()}, indent=2))
    if tokenizer is not None:
        tokenizer.save(path)
    return path


def load_model(directory: str | Path, device: str = "cpu") -> tuple[Transformer, Tokenizer | None]:
    """Rebuild the model (Transformer or EncoderDecoder, by cfg.arch) from `config.json` and load
    its safetensors weights (strictly)."""
    path = Path(directory)
    if not (path / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{path} holds no {WEIGHTS_FILE}: not a bespokelm model folder")
    cfg = ModelConfig.from_dict(json.loads((path / CONFIG_FILE).read_text())["model"])
    model = build_model(cfg)
    safetensors.torch.load_model(model, str(path / WEIGHTS_FILE), strict=True, device=device)
    model.eval()
    tokenizer = Tokenizer.load(path) if (path / TOKENIZER_FILE).is_file() else None
    return model, tokenizer
