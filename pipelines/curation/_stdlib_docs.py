"""Harvest the standard library's own docstrings: the raw text behind the demo corpus.

Run as a script in a child process (`python -I pipelines/curation/_stdlib_docs.py [N|all]`): importing
arbitrary modules can print, spawn threads or hang, so the parent (`demo_corpus.py`) runs this
with stdout captured and a timeout, and reads one JSON object per module from stdout.
Each line: {"module": name, "doc": module docstring, "sections": [[title, signature, doc], ...]}.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import json
import os
import re
import sys

# Modules that open windows, start browsers, print on import, or are slow or irrelevant.
_SKIP_PREFIXES = ("antigravity", "this", "idlelib", "tkinter", "turtle", "test", "lib2to3",
                  "ensurepip", "venv", "__main__", "_", "pydoc_data", "msilib", "winreg",
                  "winsound", "msvcrt", "nt", "_winapi", "ctypes.wintypes", "encodings")
_MIN_DOC_CHARS = 40


def _skipped(name: str) -> bool:
    parts = name.split(".")
    # Test suites (unittest.test, ctypes.test, ...) are boilerplate, not documentation.
    if any(p in ("test", "tests") or p.startswith("test_") for p in parts):
        return True
    return any(name == p or name.startswith(p) for p in _SKIP_PREFIXES)


def _members(module) -> list[list[str]]:
    """[title, signature, doc] for the module's own public functions, classes and methods."""
    out = []
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj)):
            continue
        _add(out, f"{module.__name__}.{name}", obj)
        if inspect.isclass(obj):
            for meth_name, meth in sorted(vars(obj).items()):
                if not meth_name.startswith("_") and callable(meth):
                    _add(out, f"{module.__name__}.{name}.{meth_name}", meth)
    return out


def _add(out: list, title: str, obj) -> None:
    doc = inspect.getdoc(obj) or ""
    if len(doc) < _MIN_DOC_CHARS:
        return
    try:
        # Defaults print as "<function f at 0x7f...>": drop the address so output is deterministic.
        sig = re.sub(r" at 0x[0-9a-f]+", "", str(inspect.signature(obj)))
    except (TypeError, ValueError):
        sig = ""
    out.append([title, sig, doc])


def harvest(names: list[str]) -> None:
    """Print one JSON line per importable module; silence everything the imports print."""
    real_stdout = sys.stdout
    for name in names:
        sink = io.StringIO()
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                module = importlib.import_module(name)
                doc = inspect.getdoc(module) or ""
                sections = _members(module)
        except BaseException:  # noqa: BLE001 - any failing module is simply left out
            continue
        if doc or sections:
            doc = re.sub(r" at 0x[0-9a-f]+", "", doc)
            sections = [[t, s, re.sub(r" at 0x[0-9a-f]+", "", d)] for t, s, d in sections]
            real_stdout.write(json.dumps({"module": name, "doc": doc, "sections": sections}) + "\n")
            real_stdout.flush()


def module_names() -> list[str]:
    """Top-level stdlib modules plus the submodules of stdlib packages, found without importing."""
    import pkgutil

    names = set()
    for info in pkgutil.iter_modules():
        top = info.name
        if top not in sys.stdlib_module_names or _skipped(top):
            continue
        names.add(top)
        if info.ispkg:
            path = [os.path.join(info.module_finder.path, top)]
            for sub in pkgutil.walk_packages(path, prefix=top + ".", onerror=lambda _: None):
                if not any(part.startswith("_") for part in sub.name.split(".")):
                    names.add(sub.name)
    names.update(n for n in sys.stdlib_module_names if not _skipped(n))
    return sorted(n for n in names if not _skipped(n))


if __name__ == "__main__":
    limit = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] != "all" else None
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        all_names = module_names()  # walk_packages imports packages, which may print
    harvest(all_names[:limit])
