"""How names and tags are normalised for storage, matching and display."""

from __future__ import annotations

import re
from collections.abc import Iterable

from cti.phone import region

__all__ = ["name_key", "region_of", "tags_list", "tags_text"]

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
