"""The packed-token loader: rows/s per rank from shards against what a 20M model consumes, and
validation loss at equal tokens for sampling with replacement against the epoch-exact order.

    python benchmarks/loader_throughput.py                  # about 10 minutes on 2 cores
    python benchmarks/loader_throughput.py --seeds 1 --steps 100 --no-write   # quicker

Corpus: byte-level tiny Shakespeare (../shared/data/text), written as 8 train shards the way the
tokenize stage writes them (pipelines/token_shards.py). Part 1, throughput: PackedTokens.batch
rows/s on one process (one rank), for local memory-mapped shards in both orders and for the same
shards in a local S3-compatible bucket (moto on 127.0.0.1) read by byte range; against it the
rows/s a 20M-parameter model trains at here (a plain single-process step: forward, backward,
AdamW, on --threads torch threads). Part 2, learning: the same small model trained from the same
initial weights for the same steps (same tokens) with data_order random and epoch, per seed;
validation loss on fixed validation windows. Writes the `loader_throughput` section of
benchmarks/RESULTS.md and benchmarks/loader_throughput.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _results import replace_section  # noqa: E402
from _shakespeare import SHAKESPEARE  # noqa: E402
from modeling.config import ModelConfig  # noqa: E402
from modeling.tokenizer import Tokenizer  # noqa: E402
from modeling.transformer import Transformer, lm_loss  # noqa: E402
from pipelines.tokenize import write_packed_tokens  # noqa: E402
from pipelines.training.config import TrainConfig  # noqa: E402
from pipelines.training.data import PackedTokens  # noqa: E402
from pipelines.training.schedule import make_optimizer, make_scheduler  # noqa: E402

MODEL_20M = dict(d_model=512, n_layers=6, n_heads=8)          # cpu_throughput.py's 20M size
SMALL = dict(d_model=128, n_layers=2, n_heads=4)


def write_shards(work: Path, n_shards: int) -> tuple[Path, int]:
    """Tiny Shakespeare as byte-level shards (one token per character); returns (tokens dir, vocab)."""
    text = SHAKESPEARE.read_text(encoding="utf-8")
    split = int(len(text) * 0.9)
    tok = Tokenizer.train([text[:split]], vocab_size=256)
    train, val = (tok.encode(part) for part in (text[:split], text[split:]))
    write_packed_tokens(work / "tokens", tok, train, val, n_shards=n_shards)
    return work / "tokens", tok.vocab_size


def loader_rows_per_s(tokens: str, seq_len: int, batch: int, order: str, seconds: float) -> float:
    data = PackedTokens(tokens, "train", seq_len, order=order)
    data.batch(batch, 0, 0, 0)                                   # open the shards
    rows, step, start = 0, 1, time.perf_counter()
    while time.perf_counter() - start < seconds:
        rows += len(data.batch(batch, 0, step, 0)[0])
        step += 1
    return rows / (time.perf_counter() - start)


def s3_copy(tokens: Path, seq_len: int, batch: int, seconds: float) -> float | None:
    """rows/s from the same shards in a moto bucket (range reads); None without moto."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        return None
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update({"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_EC2_METADATA_DISABLED": "true"})
    import logging
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    client = boto3.client("s3")
    client.create_bucket(Bucket="bench")
    for path in tokens.rglob("*"):
        if path.is_file():
            client.put_object(Bucket="bench", Key=f"tokens/{path.relative_to(tokens)}", Body=path.read_bytes())
    try:
        return loader_rows_per_s("s3://bench/tokens", seq_len, batch, "epoch", seconds)
    finally:
        server.stop()


def model_rows_per_s(vocab: int, seq_len: int, batch: int, threads: int, steps: int) -> tuple[float, int]:
    """rows/s a 20M model trains at (plain loop, median step after one warm-up); and its size."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=vocab, max_seq_len=seq_len, **MODEL_20M))
    tcfg = TrainConfig(seq_len=seq_len, batch_size=batch, max_steps=steps + 1, warmup_steps=0)
    optimizer = make_optimizer(model, tcfg)
    x = torch.randint(0, vocab, (batch, seq_len))
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        lm_loss(model(x), x).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times[1:]), sum(p.numel() for p in model.parameters())


@torch.no_grad()
def val_loss(model, val: PackedTokens, eval_tokens: int) -> float:
    model.eval()
    total = n = 0.0
    for x, y in val.val_batches(32, eval_tokens, 0, 1):
        total += lm_loss(model(x), y).item() * y.numel()
        n += y.numel()
    model.train()
    return total / n


def train_once(tokens: Path, vocab: int, order: str, seed: int, args) -> float:
    """Validation loss after args.steps steps of the small model in `order` (same init per seed)."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(seed)
    model = Transformer(ModelConfig(vocab_size=vocab, max_seq_len=args.seq_len, **SMALL))
    tcfg = TrainConfig(seq_len=args.seq_len, batch_size=args.batch, max_steps=args.steps,
                       warmup_steps=args.steps // 10, lr=3e-3, seed=seed, data_order=order)
    optimizer, data = make_optimizer(model, tcfg), PackedTokens(tokens, "train", args.seq_len, order=order)
    scheduler = make_scheduler(optimizer, tcfg)
    for step in range(args.steps):
        x, y = data.batch(args.batch, seed, step, 0)
        lm_loss(model(x), y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return val_loss(model, PackedTokens(tokens, "val", args.seq_len), args.eval_tokens)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=5.0, help="per loader measurement")
    p.add_argument("--model-steps", type=int, default=3, help="timed 20M steps")
    p.add_argument("--steps", type=int, default=400, help="training steps per learning run")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--eval-tokens", type=int, default=65_536)
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--render", metavar="JSON", help="only write RESULTS.md from a saved result")
    args = p.parse_args()
    if args.render:
        replace_section("loader_throughput", render(json.loads(Path(args.render).read_text())))
        return

    work = Path(tempfile.mkdtemp(prefix="loader-bench-"))
    tokens, vocab = write_shards(work, args.shards)
    n_windows = PackedTokens(tokens, "train", args.seq_len).n_windows
    rates = {order: loader_rows_per_s(str(tokens), args.seq_len, args.batch, order, args.seconds)
             for order in ("epoch", "random")}
    rates["epoch, s3 range reads"] = s3_copy(tokens, args.seq_len, args.batch, args.seconds)
    model_rate, params = model_rows_per_s(vocab, args.seq_len, args.batch, args.threads, args.model_steps)
    learning = {order: [train_once(tokens, vocab, order, seed, args) for seed in range(args.seeds)]
                for order in ("random", "epoch")}
    result = {"args": vars(args), "command": " ".join(sys.argv[1:]), "windows_per_epoch": n_windows, "loader_rows_per_s": rates,
              "model_rows_per_s": model_rate, "model_params": params, "val_loss": learning,
              "epochs_trained": args.steps * args.batch / n_windows,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.threads} torch threads",
              "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(json.dumps(result, indent=1))
    if not args.no_write:
        (ROOT / "benchmarks" / "loader_throughput.json").write_text(json.dumps(result, indent=1))
        replace_section("loader_throughput", render(result))


def render(r: dict) -> str:
    a = r["args"]
    lines = ["## Packed-token loader: rows/s per rank, and epoch-exact order against sampling with replacement", "",
             f"Command: `python benchmarks/loader_throughput.py {r.get('command', '')}` ({a['shards']} shards, seq_len "
             f"{a['seq_len']}, batch {a['batch']}, {a['threads']} torch thread). Machine: {r['machine']}, shared "
             f"with other sessions; {r['when']}. Corpus: byte-level tiny Shakespeare, {r['windows_per_epoch']:,} "
             "training windows per epoch.", "",
             "| reader | rows/s (one rank) | x a 20M model's consumption |", "|---|---|---|"]
    for name, rate in r["loader_rows_per_s"].items():
        if rate is not None:
            lines.append(f"| {name} | {rate:,.0f} | {rate / r['model_rows_per_s']:,.0f}x |")
    lines += ["", f"A {r['model_params'] / 1e6:.1f}M-parameter model trains at {r['model_rows_per_s']:.2f} rows/s "
              f"({r['model_rows_per_s'] * a['seq_len']:,.0f} tokens/s) here (plain step, median of {a['model_steps']}).", "",
              f"Validation loss (nats/char, {a['eval_tokens']:,} fixed validation tokens) of a "
              f"{SMALL['d_model']}-wide {SMALL['n_layers']}-layer model after {a['steps']} steps "
              f"({r['epochs_trained']:.2f} epochs of tokens), same initial weights per seed:", "",
              "| seed | with replacement (random) | epoch-exact | epoch - random |", "|---|---|---|---|"]
    for seed, (rnd, ep) in enumerate(zip(r["val_loss"]["random"], r["val_loss"]["epoch"])):
        lines.append(f"| {seed} | {rnd:.4f} | {ep:.4f} | {ep - rnd:+.4f} |")
    mr, me = statistics.mean(r["val_loss"]["random"]), statistics.mean(r["val_loss"]["epoch"])
    lines.append(f"| mean | {mr:.4f} | {me:.4f} | {me - mr:+.4f} |")
    if r.get("note"):
        lines += ["", f"Note: {r['note']}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
