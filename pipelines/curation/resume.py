"""Resuming a curation run: what the output folder was made from, and refusing to mix runs.

The first run into an output folder writes `<output>/_curation.json`: the full config, the input
files, the number of parts and a hash of the plan (parts.plan_parts: files, pieces, byte ranges). A later run with the same output compares itself with it: equal,
and it resumes (finished parts, dedup phases and final parts are kept, the rest is redone);
different, and it stops with a ConfigError that names the first difference, because parts made
under two configs would make one inconsistent result. `restart=True` (`bespoke curate --restart`)
removes everything the stage wrote there and starts over. Inputs are compared by name, not by
content: a file changed in place under the same name is not detected.

    start_or_resume("out/", cfg, files, parts, restart=False)   # ConfigError on a mismatch
"""
from __future__ import annotations

import dataclasses
import hashlib
import json

from pipelines.config import ConfigError
from pipelines.curation import store

MANIFEST = "_curation.json"
_VERSION = 1  # bump when the layout of parts/, dedup/ or final/ changes
# What the stage writes into its output folder (a restart removes exactly these).
OWNED = ["parts", "dedup", "final", "train", "val", "rejected", "report.json", "report.md", MANIFEST]
# Settings that change how the work is done, never what it produces.
_NOT_COMPARED = {"batch_size"}


def run_identity(cfg, files: list[str], parts: list) -> dict:
    config = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_COMPARED}
    plan = hashlib.blake2b(json.dumps([dataclasses.asdict(p) for p in parts]).encode(), digest_size=8).hexdigest()
    return {"version": _VERSION, "config": config, "inputs": list(files), "parts": len(parts), "plan": plan}


def start_or_resume(output: str, cfg, files: list[str], parts: list, restart: bool = False,
                    progress=lambda s: None) -> bool:
    """True when an earlier run's parts are resumed, False on a fresh start (which clears what
    an older run left); ConfigError when the earlier run was made differently."""
    want = run_identity(cfg, files, parts)
    path = store.join(output, MANIFEST)
    if restart or not store.exists(path):
        if restart:
            progress(f"curate: --restart: removing the earlier run's files in {output}")
        _clear(output)
        store.write_bytes(path, json.dumps(want, indent=1).encode())
        return False
    have = json.loads(store.read_bytes(path))
    difference = first_difference(have, want)
    if difference:
        raise ConfigError(f"{difference}; the finished parts in {output} were made that way. Rerun with the "
                          "same config and inputs to resume, choose a new --output, or pass --restart to start over")
    return True


def first_difference(have: dict, want: dict) -> str | None:
    """A sentence naming the first setting or input that differs, or None."""
    if have.get("version") != want["version"]:
        return f"the output was written by another layout version ({have.get('version')}, now {want['version']})"
    old, new = have.get("config", {}), want["config"]
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            return f"curate.{key} is {new.get(key)!r} in this run but was {old.get(key)!r}"
    old_in, new_in = have.get("inputs", []), want["inputs"]
    if old_in != new_in:
        added, missing = sorted(set(new_in) - set(old_in)), sorted(set(old_in) - set(new_in))
        detail = (f"{added[0]!r} is new" if added else f"{missing[0]!r} is missing" if missing
                  else "the same files in another order")
        return f"inputs: {len(new_in)} file(s) in this run, {len(old_in)} before ({detail})"
    if have.get("parts") != want["parts"]:
        return f"the inputs are split into {want['parts']} parts in this run, {have.get('parts')} before"
    if have.get("plan") != want["plan"]:
        return "the inputs are split differently in this run (a file changed size?)"
    return None


def _clear(output: str) -> None:
    for name in OWNED:
        path = store.join(output, name)
        if name.endswith((".json", ".md")):
            _delete_file(path)
        else:
            store.delete_tree(path)


def _delete_file(path: str) -> None:
    fs, p = store.filesystem(path)
    try:
        fs.delete_file(p)
    except FileNotFoundError:
        pass
