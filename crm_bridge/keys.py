"""How names and tags are normalised for storage, matching and display."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from functools import lru_cache

from cti.phone import region

__all__ = [
    "digit_runs",
    "gram_token",
    "name_key",
    "region_of",
    "search_grams",
    "tags_list",
    "tags_text",
]

_SPACES = re.compile("[\\s\u3000\u00b7.,\uff0c\u3002\\-_]+")


def name_key(name: str) -> str:
    """Casefolded, separators removed: "Zhang  San" == "zhangsan", "张 三" == "张三"."""
    return _SPACES.sub("", name.casefold())


def tags_text(tags: Iterable[str]) -> str:
    """The stored form ``,vip,gold,`` (``LIKE '%,vip,%'`` finds a whole tag)."""
    unique = list(dict.fromkeys(t.strip() for t in tags if t.strip()))
    return f",{','.join(unique)}," if unique else ""


def tags_list(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def region_of(e164: str) -> str:
    """号码归属地 in Chinese ("北京市", "江苏省常州市"): :func:`cti.phone.region`."""
    return region(e164, "zh")


#: SQLite's LIKE folds ASCII letters only: so do the grams (they may find more, never less)
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_PLAIN = frozenset(string.ascii_lowercase + string.digits)


@lru_cache(maxsize=1 << 16)
def gram_token(kind: str, gram: str) -> str:
    """A 1-2 character piece of a name key (``kind`` "n"), a number ("p") or an address
    ("e") as one word of ``[a-z0-9_]``: ``kind``, then each character itself when it is
    a-z or 0-9, else ``_<hex code point>_`` ("n" + "张伟" -> ``n_5f20__4f1f_``). One
    spelling per piece, and no tokenizer (SQLite FTS5 unicode61 with ``_`` as a token
    character, PostgreSQL ``string_to_array``) splits or folds it
    (docs/decisions/0011-crm-search.md)."""
    return kind + "".join(
        c if c in _PLAIN else f"_{ord(c):x}_" for c in gram.translate(_ASCII_LOWER)
    )


def digit_runs(text: str, n: int = 5) -> set[str]:
    """Every window of ``n`` ASCII digits in ``text`` ("+8613800" -> 86138, 61380, 13800)."""
    return {
        text[i : i + n]
        for i in range(len(text) - n + 1)
        if text[i : i + n].isascii() and text[i : i + n].isdigit()
    }


def search_grams(names: str, phones: str, emails: str) -> str:
    """``crm_search.grams``: the words (:func:`gram_token`) for every 1- and 2-character
    piece of each newline-separated entry of ``names`` and ``phones``, for the pieces
    of each address in ``emails`` that hold ``@`` or ``.`` (the only 1-2 character needles
    the search looks for in addresses), and for every window of 5 digits of any entry
    (:func:`digit_runs`: a needle with 5+ digits is found through them, each in few
    rows, instead of digit trigrams found in many), space-separated, sorted. A piece
    never spans two entries, as a ``LIKE`` match never does."""
    words: set[str] = set()
    for kind, text in (("n", names), ("p", phones), ("e", emails)):
        pieces: set[str] = set()
        runs: set[str] = set()
        for entry in text.split("\n"):
            entry = entry.translate(_ASCII_LOWER)
            pieces.update(entry)
            pieces.update(entry[i : i + 2] for i in range(len(entry) - 1))
            runs.update(digit_runs(entry))
        if kind == "e":
            pieces = {p for p in pieces if "@" in p or "." in p}
        words.update(gram_token(kind, p) for p in pieces | runs)
    return " ".join(sorted(words))
