"""The demo corpus: a gzipped WARC of the standard library's own documentation, with planted junk.

`bespoke run` curates this when no data is given, so it needs no network and no data files: the
text is the docstrings of the Python that runs it (harvested in a child process, see
`_stdlib_docs.py`), rendered as web pages with real boilerplate (navigation, breadcrumb, sidebar,
cookie notice, footer) so that text extraction has work to do. Planted, so every curation step
has something to catch: exact duplicate pages (same article, other URL), near-duplicate pages
(a changed sentence and banner), pages with PII, low-quality pages, a 404, request records.

    python -m pipelines.curation.demo_corpus /tmp/demo.warc.gz      # prints the manifest
    build_demo_warc("/tmp/demo.warc.gz", seed=0, n_modules=20)      # from Python

Deterministic for a given seed and Python installation (the docstrings come from the stdlib).
"""
from __future__ import annotations

import html
import io
import json
import random
import subprocess
import sys
import uuid
from pathlib import Path

_HOST = "https://docs.pylib.example"
_MIRROR = "https://mirror.pydocs-archive.example"
_WARC_DATE = "2024-05-01T12:00:00Z"
_PAGE_WORDS = 2500  # big modules are split into pages of about this many words
_MIN_MODULE_WORDS = 150  # modules with less documentation than this are left out


def build_demo_warc(path: str, seed: int = 0, n_modules: int | None = None) -> dict:
    """Write the demo WARC to `path` and return a manifest of what was planted where."""
    rng = random.Random(seed)
    modules = _harvest()
    if n_modules is not None:
        modules = sorted(rng.sample(modules, min(n_modules, len(modules))), key=lambda m: m["module"])
    pages = [p for m in modules for p in _module_pages(m)]
    records, planted = _plant(pages, rng)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _write_warc(path, records, rng)
    return {
        "path": str(path),
        "modules": len(modules),
        "pages": sum(1 for r in records if r["type"] == "response"),
        "exact_dups": len(planted["exact_dups"]),
        "near_dups": len(planted["near_dups"]),
        "pii_pages": len(planted["pii"]),
        "low_quality": len(planted["low_quality"]),
        "bytes": Path(path).stat().st_size,
        "text_chars": sum(len(p["text"]) for p in pages),
        "planted": planted,
    }


# ---------------------------------------------------------------- harvesting the docstrings

def _harvest(timeout_s: float = 60.0) -> list[dict]:
    """Run the harvester in an isolated child: imports cannot print here, hang us, or leak."""
    script = Path(__file__).with_name("_stdlib_docs.py")
    cmd = [sys.executable, "-I", str(script), "all"]
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=timeout_s, stdin=subprocess.DEVNULL).stdout
    except subprocess.TimeoutExpired as exc:  # keep what was harvested before the hang
        out = exc.stdout or b""
    modules = []
    for line in out.decode("utf-8", "replace").splitlines():
        try:
            mod = json.loads(line)
        except ValueError:
            continue
        words = len(mod["doc"].split()) + sum(len(s[2].split()) for s in mod["sections"])
        if words >= _MIN_MODULE_WORDS:
            modules.append(mod)
    return modules


# ---------------------------------------------------------------- rendering pages

def _module_pages(mod: dict) -> list[dict]:
    """Split a module's docs into pages of about _PAGE_WORDS words; each page: url, title, body."""
    name = mod["module"]
    chunks, current, words = [], [], 0
    for title, sig, doc in mod["sections"]:
        n = len(doc.split())
        if current and words + n > _PAGE_WORDS:
            chunks.append(current)
            current, words = [], 0
        current.append((title, sig, doc))
        words += n
    chunks.append(current)
    pages = []
    for i, sections in enumerate(chunks):
        intro = mod["doc"] if i == 0 else f"Reference for {name}, part {i + 1} of {len(chunks)}."
        suffix = "" if i == 0 else f"-part{i + 1}"
        body = [f"<h1>{html.escape(name)} &#8212; {html.escape(_first_line(mod['doc']) or name)}</h1>"]
        body += _doc_html(intro)
        for title, sig, doc in sections:
            body.append(f'<h2 id="{html.escape(title)}"><code>{html.escape(title + sig)}</code></h2>')
            body += _doc_html(doc)
        text = "\n".join([intro] + [d for _, _, d in sections])
        pages.append({"url": f"{_HOST}/library/{name}{suffix}.html", "title": name, "module": name,
                      "body": body, "text": text})
    return pages


def _first_line(doc: str) -> str:
    return doc.strip().split("\n", 1)[0][:80] if doc.strip() else ""


def _doc_html(doc: str) -> list[str]:
    """Docstring paragraphs as <p>, examples and indented blocks as <pre>."""
    out = []
    for para in doc.split("\n\n"):
        if not para.strip():
            continue
        lines = para.split("\n")
        if lines[0].lstrip().startswith(">>>") or all(ln.startswith("    ") for ln in lines):
            out.append(f"<pre>{html.escape(para)}</pre>")
        else:
            out.append(f"<p>{html.escape(' '.join(ln.strip() for ln in lines))}</p>")
    return out


def _render(page: dict, nav_modules: list[str], banner: str = "Python documentation") -> str:
    """A full HTML page: the article inside realistic site chrome."""
    sidebar = "".join(f'<li><a href="{_HOST}/library/{m}.html">{html.escape(m)}</a></li>'
                      for m in nav_modules)
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(page['title'])} &#8212; {banner}</title>",
        f'<meta name="description" content="Documentation for {html.escape(page["title"])}">',
        "</head><body>",
        '<div id="cookie-notice" class="cookie-banner">We use cookies to analyse traffic and '
        'remember your preferences. By continuing to browse this site you agree to our '
        '<a href="/cookies.html">cookie policy</a>. <button>Accept all</button> '
        '<button>Manage settings</button></div>',
        '<header><nav class="top-nav"><a href="/">Home</a> | <a href="/library/">Library '
        'reference</a> | <a href="/tutorial/">Tutorial</a> | <a href="/howto/">HOWTOs</a> | '
        '<a href="/search.html">Search</a> | <a href="/download.html">Download</a></nav></header>',
        f'<nav class="breadcrumb"><a href="/">{banner}</a> &#187; <a href="/library/">The Python '
        f'Standard Library</a> &#187; {html.escape(page["title"])}</nav>',
        '<div class="layout"><aside class="sidebar"><h3>Related modules</h3>'
        f"<ul>{sidebar}</ul><h3>This page</h3><ul><li><a href=\"#\">Report a bug</a></li>"
        '<li><a href="#">Show source</a></li></ul></aside>',
        '<main><article class="body" role="main">', *page["body"], "</article></main></div>",
        '<footer><p>&#169; Copyright 2001-2024, Python Software Foundation. This page is licensed '
        'under the Python Software Foundation License Version 2.</p><p><a href="/privacy.html">'
        'Privacy policy</a> | <a href="/about.html">About these documents</a> | '
        '<a href="/bugs.html">Found a bug?</a></p></footer>',
        "</body></html>",
    ])


# ---------------------------------------------------------------- planting

def _plant(pages: list[dict], rng: random.Random) -> tuple[list[dict], dict]:
    """Turn pages into WARC records and add the planted duplicates, PII, junk and non-pages."""
    names = sorted({p["module"] for p in pages})
    nav = lambda: rng.sample(names, min(12, len(names)))  # noqa: E731 - tiny local helper
    long_pages = [i for i, p in enumerate(pages) if len(p["text"].split()) >= 400]
    n_plant = max(1, len(pages) // 20)
    chosen = rng.sample(long_pages, min(len(long_pages), 3 * n_plant))
    exact_src, near_src, pii_src = chosen[:n_plant], chosen[n_plant:2 * n_plant], chosen[2 * n_plant:]
    planted = {"exact_dups": [], "near_dups": [], "pii": {}, "low_quality": {}, "non_documents": {}}

    for i in pii_src:
        values = _pii_values(rng)
        pages[i]["body"].insert(2, "<p>Questions about this page? Write to the maintainer at "
                                f"{values[0]} or call {values[1]} on weekdays. The nightly build "
                                f"mirror runs at {values[2]} behind the office firewall.</p>")
        planted["pii"][pages[i]["url"]] = values

    records = [_response(p["url"], _render(p, nav())) for p in pages]
    for i in exact_src:
        url = pages[i]["url"].replace(_HOST, _MIRROR)
        records.append(_response(url, _render(pages[i], nav(), banner="PyDocs Archive")))
        planted["exact_dups"].append([pages[i]["url"], url])
    for i in near_src:
        near = dict(pages[i], body=_near_edit(pages[i]["body"], rng))
        url = pages[i]["url"].replace(_HOST, _MIRROR).replace(".html", "-3.12.html")
        records.append(_response(url, _render(near, nav(), banner="Python 3.12 documentation")))
        planted["near_dups"].append([pages[i]["url"], url])
    for kind, body in _junk_pages(rng, 1 + len(pages) // 100):
        url = f"{_HOST}/promo/{kind}-{len(planted['low_quality'])}.html"
        records.append(_response(url, body))
        planted["low_quality"][url] = kind
    records.append(_response(f"{_HOST}/library/missing.html", "<html><body><h1>Not Found</h1>"
                             "<p>The requested page does not exist.</p></body></html>", status=404))
    planted["non_documents"][f"{_HOST}/library/missing.html"] = "http_404"
    rng.shuffle(records)
    for rec in records[:3]:  # a crawler writes the request before its response
        planted["non_documents"][rec["url"] + "#request"] = "request"
    records = [{"type": "request", "url": r["url"], "body": b""} for r in records[:3]] + records
    return records, planted


def _response(url: str, body: str, status: int = 200) -> dict:
    return {"type": "response", "url": url, "body": body.encode("utf-8"), "status": status}


def _pii_values(rng: random.Random) -> list[str]:
    first = rng.choice(["ada", "grace", "alan", "barbara", "guido", "linus", "margaret", "ken"])
    last = rng.choice(["lovelace", "hopper", "turing", "liskov", "rossum", "hamilton", "thompson"])
    email = f"{first}.{last}{rng.randint(10, 99)}@{rng.choice(['example.org', 'mail.example.com'])}"
    phone = rng.choice([f"({rng.randint(201, 989)}) 555-{rng.randint(1000, 9999)}",
                        f"+1-{rng.randint(201, 989)}-555-{rng.randint(1000, 9999)}",
                        f"+44 20 7946 {rng.randint(1000, 9999)}"])
    ip = f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    return [email, phone, ip]


def _near_edit(body: list[str], rng: random.Random) -> list[str]:
    """A near-duplicate: a changed title line, one added sentence, one word swapped."""
    body = list(body)
    body[0] = body[0].replace("</h1>", " (Python 3.12)</h1>")
    body.insert(1, "<p>Changed in version 3.12: this page was revised for the new release and "
                   "some examples were updated.</p>")
    paras = [i for i, b in enumerate(body) if b.startswith("<p>") and " the " in b]
    if paras:
        i = rng.choice(paras)
        body[i] = body[i].replace(" the ", " this ", 1)
    return body


def _junk_pages(rng: random.Random, copies: int) -> list[tuple[str, str]]:
    """Low-quality pages the quality filters must drop: link farm, stub, keyword stuffing, teasers."""
    words = ["cheap", "python", "hosting", "best", "free", "download", "tutorial", "fast", "crack"]
    out = []
    for c in range(copies):
        links = "".join(f'<li><a href="/go/{rng.randint(0, 10**6)}">{rng.choice(words)} '
                        f"{rng.choice(words)}</a></li>" for _ in range(300))
        out.append(("link-farm", f"<html><body><main><ul>{links}</ul></main></body></html>"))
        out.append(("stub", "<html><body><main><p>This page has moved. Click here to continue."
                            "</p></main></body></html>"))
        stuffed = " ".join(["best cheap python hosting free download"] * (120 + c))
        out.append(("keyword-stuffing", f"<html><body><main><h1>Best Python Hosting</h1><p>{stuffed}"
                                        "</p></main></body></html>"))
        teasers = "".join(f"<p>{rng.choice(words).title()} {rng.choice(words)} tips you will not "
                          f"believe, number {k} will surprise you...</p>" for k in range(40))
        out.append(("teasers", f"<html><body><main>{teasers}</main></body></html>"))
    return out


# ---------------------------------------------------------------- writing the WARC

def _write_warc(path: str, records: list[dict], rng: random.Random) -> None:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        info = writer.create_warcinfo_record(Path(path).name, {
            "software": "bespokelm demo_corpus", "format": "WARC File Format 1.1"})
        _fix_headers(info, rng)
        writer.write_record(info)
        for rec in records:
            if rec["type"] == "request":
                http = StatusAndHeaders(f"GET {rec['url']} HTTP/1.1", [("Host", "docs.pylib.example")],
                                        is_http_request=True)
                out = writer.create_warc_record(rec["url"], "request", payload=io.BytesIO(b""),
                                                http_headers=http)
            else:
                reason = "200 OK" if rec["status"] == 200 else "404 Not Found"
                http = StatusAndHeaders(reason, [("Content-Type", "text/html; charset=utf-8"),
                                                 ("Content-Length", str(len(rec["body"])))],
                                        protocol="HTTP/1.1")
                out = writer.create_warc_record(rec["url"], "response", payload=io.BytesIO(rec["body"]),
                                                http_headers=http)
            _fix_headers(out, rng)
            writer.write_record(out)


def _fix_headers(record, rng: random.Random) -> None:
    """warcio stamps a random record id and the current time: replace both for determinism."""
    record.rec_headers.replace_header("WARC-Record-ID", f"<urn:uuid:{uuid.UUID(int=rng.getrandbits(128))}>")
    record.rec_headers.replace_header("WARC-Date", _WARC_DATE)


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "demo.warc.gz"
    manifest = build_demo_warc(target)
    print(json.dumps({k: v for k, v in manifest.items() if k != "planted"}, indent=2))
