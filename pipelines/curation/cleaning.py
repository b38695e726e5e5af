"""Optional text cleaning run by the normalize step: markup, control characters, emoji, punctuation,
boilerplate lines. Pure functions on strings, no Ray; each is switched by a CurateConfig field.

    clean_markup("a <b>bold</b> &amp; <br/>x")     # "a bold & x"
    remove_control_chars("a\\x00b\\u200bc")          # "abc"
    remove_emoji("great 👍🏽 ★ job")                 # "great   job" (whitespace tidied later)
    normalize_punctuation("“quoted” – yes…")        # '"quoted" - yes...'
    remove_boilerplate_lines("text\\nAll rights reserved.\\n12 likes")   # "text"
    text = clean(text, cfg)                         # the switched-on ones, in this order
"""
from __future__ import annotations

import html
import re

# Leftover HTML: comments, doctype, and tags <name ...> / </name> / <name/> of HTML elements,
# attributes on one line. Only element names count, so "a<b and c>d" or "List<String>" stay.
_ELEMENTS = ("a abbr address article aside audio b bdi bdo blockquote body br button canvas caption "
             "center cite code col colgroup dd del details dfn dialog div dl dt em embed fieldset "
             "figcaption figure font footer form h1 h2 h3 h4 h5 h6 head header hr html i iframe img input "
             "ins kbd label legend li link main mark meta nav noscript object ol optgroup option p "
             "param picture pre q s samp script section select small source span strong style sub "
             "summary sup svg table tbody td template textarea tfoot th thead time title tr track tt u "
             "ul var video wbr").split()
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_TAG = re.compile(rf"</?(?:{'|'.join(_ELEMENTS)})(?:\s[^<>\n]*)?/?>|<!DOCTYPE[^<>\n]*>", re.I)
# Entities with their semicolon only: html.unescape alone would also turn "&notit" into "¬it".
_ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]{1,31}|#\d{1,7}|#[xX][0-9A-Fa-f]{1,6});")

# C0/C1 controls except tab, newline, carriage return, and invisible format characters that carry
# no text: zero-width space, word joiner, byte-order mark, soft hyphen. Zero-width (non-)joiners
# are kept: Persian and Indic scripts need them.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u2060\ufeff\u00ad]")

# Emoji and pictographs (Unicode emoji blocks, misc symbols and dingbats, arrows and stars),
# their modifiers (skin tones, variation selectors, keycap, tags, ZWJ inside a sequence), and
# private-use characters (icon fonts such as Font Awesome leave these behind in extracted text).
_PICTO = ("\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u231A\u231B\u23E9-\u23FA"
          "\uE000-\uF8FF\U000F0000-\U0010FFFD")
_EMOJI = re.compile(f"[{_PICTO}](?:[\u200d\ufe0f\u20e3\U000E0020-\U000E007F]*[{_PICTO}])*"
                    "[\ufe0e\ufe0f\u20e3\U000E0020-\U000E007F]*|[\ufe0e\ufe0f\u20e3]")

# CCNet's punctuation map (facebookresearch/cc_net, cc_net/text_normalizer.py, UNICODE_PUNCT),
# without its "１" -> '"' entry (a typo there), plus the left single quote and low-9 quotes.
_PUNCT = {"，": ",", "。": ".", "、": ",", "„": '"', "”": '"', "“": '"', "«": '"', "»": '"', "」": '"',
          "「": '"', "《": '"', "》": '"', "´": "'", "∶": ":", "：": ":", "？": "?", "！": "!", "（": "(",
          "）": ")", "；": ";", "–": "-", "—": " - ", "．": ". ", "～": "~", "’": "'", "…": "...", "━": "-",
          "〈": "<", "〉": ">", "【": "[", "】": "]", "％": "%", "►": "-", "‘": "'", "‚": "'"}
_PUNCT_RE = re.compile("[" + "".join(_PUNCT) + "]")

# Boilerplate lines. C4 (Raffel et al. 2020, Sec. 2.2) already drops lines mentioning javascript
# and cookie / privacy / terms phrases (c4_lines in quality_rules.py); RefinedWeb (Penedo et al.
# 2023, "line-wise corrections") removes social-media counters and navigation-button lines.
# This list of site-furniture phrases is ours; a line is removed only when it is short
# (<= _BOILERPLATE_MAX_WORDS words), so prose that mentions a phrase stays.
_BOILERPLATE_MAX_WORDS = 12
_BOILERPLATE = re.compile(
    r"all rights reserved|copyright ©|^©|^copyright \d{4}|subscribe|newsletter|sign up|sign in|log in"
    r"|follow us|share this|share on|click here|skip to (?:main )?content|back to top|read more"
    r"|accept (?:all )?cookies|cookie settings|powered by|advertisement|related posts|leave a (?:comment|reply)",
    re.I)
_COUNTER = re.compile(r"^\W*\d[\d.,]*[kKmM]?\s+(?:likes?|comments?|shares?|views?|retweets?|replies|reply|"
                      r"followers?|reactions?)\W*$", re.I)
_NAV_WORDS = {"home", "menu", "search", "share", "tweet", "print", "email", "next", "previous", "prev",
              "close", "login", "register", "like", "reply", "more", "top", "contact", "about"}


def clean_markup(text: str) -> str:
    """Remove HTML comments and tags that survived extraction, then decode entities."""
    text = _TAG.sub("", _COMMENT.sub("", text))
    return _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)


def remove_control_chars(text: str) -> str:
    return _CONTROL.sub("", text)


def remove_emoji(text: str) -> str:
    return _EMOJI.sub("", text)


def normalize_punctuation(text: str) -> str:
    return _PUNCT_RE.sub(lambda m: _PUNCT[m.group(0)], text)


def is_boilerplate(line: str) -> bool:
    """A short site-furniture line, a counter ("12 likes") or a line of navigation words only."""
    words = line.split()
    if not words:
        return False
    if _COUNTER.match(line.strip()):
        return True
    if all(w.strip("|·•>»/-").lower() in _NAV_WORDS or not w.strip("|·•>»/-") for w in words):
        return True
    return len(words) <= _BOILERPLATE_MAX_WORDS and bool(_BOILERPLATE.search(line.strip()))


def remove_boilerplate_lines(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if not is_boilerplate(line))


def clean(text: str, cfg) -> str:
    """The cleaning functions cfg switches on, markup first (a tag can hide other characters)."""
    if cfg.clean_markup:
        text = clean_markup(text)
    if cfg.clean_control_chars:
        text = remove_control_chars(text)
    if cfg.clean_emoji:
        text = remove_emoji(text)
    if cfg.normalize_punctuation:
        text = normalize_punctuation(text)
    return text
