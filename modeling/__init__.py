"""Transformer models, tokenizer wrapper and generation in plain PyTorch: no Ray, no cluster code."""
