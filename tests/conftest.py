"""Shared test fixtures: one Ray instance per test session, and paths to the shared real data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# Tests use an embedded Ray; never pick up a cluster address from the environment.
os.environ.pop("RAY_ADDRESS", None)
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def ray_session():
    """Start Ray once for the whole test session (ray.init costs ~10 s here)."""
    import ray

    from cluster import connect

    connect(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public data in ../shared/data; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's model tests on one torch thread (the 2 cores are shared), then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def stdlib_docs() -> list[str]:
    """Real English + code text without external files: docstrings of a few stdlib modules."""
    import collections
    import inspect
    import json as json_mod
    import os
    import re
    import textwrap

    texts = []
    for module in (os, json_mod, re, collections, textwrap):
        texts.append(inspect.getdoc(module) or "")
        for _, obj in inspect.getmembers(module):
            doc = inspect.getdoc(obj)
            if doc and (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
                texts.append(doc)
    return [t for t in texts if t]


@pytest.fixture(scope="module")
def docs() -> list[str]:
    texts = stdlib_docs()
    assert sum(map(len, texts)) > 50_000
    return texts


@pytest.fixture(scope="module")
def tok(docs):
    """A BPE tokenizer (vocab 800) trained on the stdlib docs; modules may define their own `tok`."""
    from modeling.tokenizer import Tokenizer

    return Tokenizer.train(docs, vocab_size=800)
