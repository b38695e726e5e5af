"""Export stage: a trained model folder -> a Hugging Face Llama folder, and the way back.

    bespoke export runs/demo/train/.../checkpoint_000001 hf_model/    # or the model/ folder inside it
    bespoke export hf_model/ back/ --import                           # HF Llama folder -> our format

The exported folder loads with `transformers.AutoModelForCausalLM.from_pretrained(dir)` and
`AutoTokenizer.from_pretrained(dir)`, and lm-eval's `hf` model type evaluates it
(`lm_eval --model hf --model_args pretrained=dir`). `--verify` (needs transformers) loads the
export with transformers and reports the largest logit difference against our model.
"""
from __future__ import annotations

from pathlib import Path

# torch and modeling are imported inside the functions: `bespoke --help` stays fast.


def resolve_model_dir(checkpoint: str | Path) -> Path:
    """A model folder, or a Ray Train checkpoint folder holding one in `model/`."""
    from modeling.checkpoint import WEIGHTS_FILE

    path = Path(checkpoint)
    for candidate in (path, path / "model"):
        if (candidate / WEIGHTS_FILE).is_file() and (candidate / "config.json").is_file():
            return candidate
    raise FileNotFoundError(f"{path} is neither a model folder nor a checkpoint with model/ inside")


def max_logit_diff(model, hf_dir: str | Path, seq_len: int = 32, seed: int = 0) -> float:
    """Largest |ours - transformers'| logit over a random (2, seq_len) batch, in fp32."""
    import torch
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(seed)
    T = min(seq_len, model.cfg.max_seq_len)
    tokens = torch.randint(0, model.cfg.vocab_size, (2, T), generator=g)       # (B, T)
    with torch.no_grad():
        return float((model.float()(tokens) - hf(tokens).logits).abs().max())


def run_export(checkpoint: str | Path, out_dir: str | Path, verify: bool = False) -> dict:
    """Write `out_dir` as a HF Llama folder; returns a summary (with max_logit_diff if verify)."""
    from modeling.checkpoint import load_model
    from modeling.hf import export_hf

    model, tokenizer = load_model(resolve_model_dir(checkpoint))
    path = export_hf(model, tokenizer, out_dir)
    summary = {"out_dir": str(path), "format": "llama", "params": model.num_params(),
               "tokenizer": tokenizer is not None}
    if verify:
        summary["max_logit_diff"] = max_logit_diff(model, path)
    return summary


def run_import(hf_dir: str | Path, out_dir: str | Path) -> dict:
    """Read a HF Llama folder and write it as our model folder (safetensors + config.json)."""
    from modeling.checkpoint import save_model
    from modeling.hf import import_hf

    model, tokenizer = import_hf(hf_dir)
    path = save_model(out_dir, model, tokenizer)
    return {"out_dir": str(path), "params": model.num_params(), "tokenizer": tokenizer is not None,
            "model": model.cfg.to_dict()}


def add_arguments(parser) -> None:
    """`bespoke export` arguments (registered by pipelines.cli)."""
    parser.add_argument("checkpoint", help="our model folder or checkpoint (with --import: a HF Llama folder)")
    parser.add_argument("out_dir", help="folder to write")
    parser.add_argument("--import", dest="import_hf", action="store_true",
                        help="the other way: read a HF Llama folder, write our model folder")
    parser.add_argument("--verify", action="store_true",
                        help="load the export with transformers and report the largest logit difference")


def cli(args) -> dict:
    """Run `bespoke export`; a model Llama cannot represent exits 1 with one line naming why."""
    try:
        if args.import_hf:
            return run_import(args.checkpoint, args.out_dir)
        return run_export(args.checkpoint, args.out_dir, verify=args.verify)
    except ValueError as exc:
        raise SystemExit(f"bespoke export: {exc}") from None
