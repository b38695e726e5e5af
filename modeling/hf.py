"""Hugging Face Llama format: export a decoder-only model to a `LlamaForCausalLM` folder and back.

    export_hf(model, tokenizer, "out/")          # model.safetensors, config.json, tokenizer files
    model, tokenizer = import_hf("out/")         # any Llama folder without rope scaling or biases

Only plain JSON and safetensors are read or written (never pickle), and `transformers` is not
needed here: the folder is built from the documented Llama parameter names and config fields.

RoPE layout. Our `apply_rope` rotates interleaved pairs (x[2i], x[2i+1]) of each head; HF Llama's
`rotate_half` rotates (x[i], x[i + D/2]). Reordering the output rows of wq and wk inside each head
(even rows first, then odd rows) turns one into the other; the attention scores q.k are unchanged
because the same permutation is applied to q and k. This is the permutation of HF's
`convert_llama_weights_to_hf.py`.

Tokenizer. The folder lists every reserved special token and, when the tokenizer has the chat
tokens, a Jinja `chat_template` that renders `Tokenizer.encode_chat`'s format, so
`apply_chat_template(messages)` gives our ids (and an assistant mask through `{% generation %}`).
As in most HF tokenizers, plain `hf_tok(text)` matches special tokens spelled in text (the chat
template is rendered to text first); pass `split_special_tokens=True` (plain text) or
`apply_chat_template(..., sanitize_control_tokens=True)` for untrusted input, which is what
`modeling.tokenizer` always does.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import safetensors.torch
import torch

from modeling.config import ModelConfig
from modeling.tokenizer import BOS, CHAT_ROLES, END_OF_TURN, EOS, PAD, Tokenizer
from modeling.transformer import Transformer

WEIGHTS_FILE = "model.safetensors"
_LAYER_NAMES = {  # ours (inside layers.{i}.) -> HF (inside model.layers.{i}.)
    "attn.wq.weight": "self_attn.q_proj.weight",
    "attn.wk.weight": "self_attn.k_proj.weight",
    "attn.wv.weight": "self_attn.v_proj.weight",
    "attn.wo.weight": "self_attn.o_proj.weight",
    "ffn.w1.weight": "mlp.gate_proj.weight",
    "ffn.w3.weight": "mlp.up_proj.weight",
    "ffn.w2.weight": "mlp.down_proj.weight",
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}


def interleaved_to_half(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Rows of a q/k projection (H*D, C): per head, pairs (2i, 2i+1) -> halves (i, i + D/2)."""
    rows, cols = w.shape
    return w.reshape(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def half_to_interleaved(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Inverse of `interleaved_to_half`."""
    rows, cols = w.shape
    return w.reshape(n_heads, 2, rows // n_heads // 2, cols).transpose(1, 2).reshape(rows, cols)


def check_exportable(cfg: ModelConfig) -> None:
    """Raise ValueError unless the config is the Llama layout (what LlamaForCausalLM computes)."""
    llama = {"arch": "decoder_only", "positions": "rope", "ffn": "swiglu", "norm": "rmsnorm",
             "norm_position": "pre", "bias": False}
    for name, want in llama.items():
        have = getattr(cfg, name, want)
        if have != want:
            raise ValueError(f"{name}: {have!r} has no Llama equivalent (export needs {want!r})")


def to_hf_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    """Our parameters under HF Llama names, q/k rows permuted to the rotate_half layout."""
    cfg = model.cfg
    check_exportable(cfg)
    ours = model.state_dict()
    out = {"model.embed_tokens.weight": ours["tok_emb.weight"], "model.norm.weight": ours["norm.weight"]}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = ours["lm_head.weight"]
    for i in range(cfg.n_layers):
        for our_name, hf_name in _LAYER_NAMES.items():
            w = ours[f"layers.{i}.{our_name}"]
            if our_name == "attn.wq.weight":
                w = interleaved_to_half(w, cfg.n_heads)
            elif our_name == "attn.wk.weight":
                w = interleaved_to_half(w, cfg.kv_heads)
            out[f"model.layers.{i}.{hf_name}"] = w
    return {k: v.detach().to("cpu").contiguous() for k, v in out.items()}


def from_hf_state_dict(hf: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Inverse of `to_hf_state_dict`: HF Llama names -> our state dict (lm_head tied if absent)."""
    ours = {"tok_emb.weight": hf["model.embed_tokens.weight"], "norm.weight": hf["model.norm.weight"]}
    ours["lm_head.weight"] = hf.get("lm_head.weight", ours["tok_emb.weight"])
    for i in range(cfg.n_layers):
        for our_name, hf_name in _LAYER_NAMES.items():
            w = hf[f"model.layers.{i}.{hf_name}"]
            if our_name == "attn.wq.weight":
                w = half_to_interleaved(w, cfg.n_heads)
            elif our_name == "attn.wk.weight":
                w = half_to_interleaved(w, cfg.kv_heads)
            ours[f"layers.{i}.{our_name}"] = w
    return ours


def hf_config(cfg: ModelConfig, tokenizer: Tokenizer | None = None) -> dict:
    """config.json for LlamaForCausalLM (fields of transformers' LlamaConfig)."""
    special = {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    if tokenizer is not None:
        special = {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id,
                   "pad_token_id": tokenizer.pad_id}
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model, "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.kv_heads, "head_dim": cfg.head_dim, "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len, "rms_norm_eps": cfg.norm_eps,
        # rope_theta at the top level for transformers 4.x, rope_parameters for 5.x.
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "tie_word_embeddings": cfg.tie_embeddings, "attention_bias": False, "mlp_bias": False,
        "attention_dropout": 0.0, "initializer_range": 0.02, "use_cache": True,
        "torch_dtype": "float32", "dtype": "float32", **special,
    }


def chat_template() -> str:
    """Jinja for `apply_chat_template`: `<|role|>content<|end|>` per message (as `encode_chat`),
    assistant turns inside `{% generation %}` for `return_assistant_tokens_mask`, and `<|assistant|>`
    after the last turn when `add_generation_prompt`. Role tokens are literals, never built from input."""
    roles = "".join(f"{'{% if' if i == 0 else '{% elif'} message['role'] == '{role}' %}}{{{{ '{token}' }}}}"
                    for i, (role, token) in enumerate(CHAT_ROLES.items()))
    roles += "{% else %}{{ raise_exception('unknown role: ' + message['role']) }}{% endif %}"
    turn = f"{{{{ message['content'] }}}}{{{{ '{END_OF_TURN}' }}}}"
    return ("{% for message in messages %}" + roles
            + "{% if message['role'] == 'assistant' %}{% generation %}" + turn + "{% endgeneration %}"
            + "{% else %}" + turn + "{% endif %}{% endfor %}"
            + f"{{% if add_generation_prompt %}}{{{{ '{CHAT_ROLES['assistant']}' }}}}{{% endif %}}")


def _write_tokenizer(tokenizer: Tokenizer, path: Path) -> None:
    """tokenizer.json plus the config files `AutoTokenizer` reads (PreTrainedTokenizerFast)."""
    tokenizer.save(path)
    specials = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD}
    extra = [t for t in tokenizer.special_tokens if t not in (BOS, EOS, PAD)]
    (path / "special_tokens_map.json").write_text(json.dumps({**specials, "additional_special_tokens": extra}, indent=2))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", **specials, "extra_special_tokens": extra,
              "model_max_length": 10**30, "clean_up_tokenization_spaces": False,
              # The rendered chat template must encode "<|user|>" as its id (see the module docstring).
              "split_special_tokens": False, "add_bos_token": False, "add_eos_token": False}
    if tokenizer.has_chat:
        config["chat_template"] = chat_template()
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def export_hf(model: Transformer, tokenizer: Tokenizer | None, directory: str | Path) -> Path:
    """Write `directory` as a Hugging Face Llama model folder; returns its path."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    state = to_hf_state_dict(model)
    safetensors.torch.save_file(state, str(path / WEIGHTS_FILE), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(hf_config(model.cfg, tokenizer), indent=2))
    generation = {k: v for k, v in hf_config(model.cfg, tokenizer).items() if k.endswith("token_id")}
    if tokenizer is not None and tokenizer.has_chat:          # a chat model's answer ends at <|end|>
        generation["eos_token_id"] = [tokenizer.eos_id, tokenizer.end_of_turn_id]
    (path / "generation_config.json").write_text(json.dumps(generation, indent=2))
    if tokenizer is not None:
        _write_tokenizer(tokenizer, path)
    return path


def config_from_hf(hf: dict) -> ModelConfig:
    """Our ModelConfig from a Llama config.json; ValueError for what our model cannot compute."""
    if hf.get("model_type") != "llama":
        raise ValueError(f"model_type: {hf.get('model_type')!r} is not 'llama'")
    rope = hf.get("rope_parameters") or {}
    if hf.get("rope_scaling") or rope.get("rope_type", "default") != "default":
        raise ValueError("rope_scaling: scaled RoPE is not supported")
    if hf.get("attention_bias") or hf.get("mlp_bias") or hf.get("hidden_act", "silu") != "silu":
        raise ValueError("attention_bias/mlp_bias/hidden_act: only the bias-free SiLU Llama is supported")
    heads, hidden = hf["num_attention_heads"], hf["hidden_size"]
    if hf.get("head_dim", hidden // heads) != hidden // heads:
        raise ValueError(f"head_dim: {hf['head_dim']} != hidden_size / num_attention_heads")
    kv = hf.get("num_key_value_heads") or heads
    cfg = ModelConfig(
        vocab_size=hf["vocab_size"], d_model=hidden, n_layers=hf["num_hidden_layers"], n_heads=heads,
        n_kv_heads=None if kv == heads else kv, ffn_hidden=hf["intermediate_size"],
        max_seq_len=hf.get("max_position_embeddings", 2048),
        rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
        norm_eps=hf.get("rms_norm_eps", 1e-6), tie_embeddings=bool(hf.get("tie_word_embeddings", False)))
    # Leave ffn_hidden unset when it is our default rule, so export + import gives back the same config.
    default = dataclasses.replace(cfg, ffn_hidden=None)
    return default if default.ffn_dim == cfg.ffn_dim else cfg


def import_hf(directory: str | Path) -> tuple[Transformer, Tokenizer | None]:
    """Load a Llama folder (single model.safetensors) as our Transformer, plus its tokenizer when it
    has our special tokens (bos/eos/pad), else None."""
    path = Path(directory)
    if not (path / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{path} holds no {WEIGHTS_FILE} (sharded or pickle checkpoints are not read)")
    cfg = config_from_hf(json.loads((path / "config.json").read_text()))
    model = Transformer(cfg)
    state = from_hf_state_dict(safetensors.torch.load_file(str(path / WEIGHTS_FILE)), cfg)
    model.load_state_dict(state, strict=True)
    model.eval()
    tokenizer = None
    if (path / "tokenizer.json").is_file():
        try:
            tokenizer = Tokenizer.load(path)
        except ValueError:
            tokenizer = None
    return model, tokenizer
