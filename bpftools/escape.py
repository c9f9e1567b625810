"""Turning raw names into text that is safe to print and faithful to the bytes.

Two renderings of a name:

* JSON (decode_name, decode_fs): exact; UTF-8 as is, a byte that is not
  UTF-8 becomes the text \\xNN.
* text and CSV (terminal_safe, text_name): nothing that moves the cursor,
  rings, switches the terminal's mode or reorders what follows reaches the
  reader raw, and a backslash is doubled, so `nl\\nname` and a name with a
  newline never look alike: C0, DEL and C1 controls become \\n, \\t, \\r or
  \\xNN, bidirectional and invisible format characters (U+202E, U+2066, a
  zero-width space, ...) become \\uXXXX, a byte that is not UTF-8 \\xNN.

Names are kept in the model as os.fsdecode() does (surrogates for bytes
that are not UTF-8), so either rendering can be made from them.
"""
from __future__ import annotations

import errno as _errno
import re

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\"}
# C0, DEL, C1; Arabic letter mark, zero-width and bidi marks, line and paragraph separators, bidi
# embeddings/overrides/isolates, word joiner and invisible operators, BOM; surrogates (undecodable bytes)
_UNSAFE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]")


def _escape(m: re.Match) -> str:
    c = m.group()
    if c in _NAMED:
        return _NAMED[c]
    o = ord(c)
    if o < 0x100:
        return "\\x%02x" % o
    if 0xDC80 <= o <= 0xDCFF:           # surrogateescape's stand-in for the byte o - 0xDC00
        return "\\x%02x" % (o - 0xDC00)
    return "\\u%04x" % o


def decode_name(raw: bytes | None) -> str | None:
    """For JSON: UTF-8 as is; every byte that is not UTF-8 becomes \\xNN (never dropped)."""
    if raw is None:
        return None
    return raw.decode("utf-8", "backslashreplace")


def fs_text(raw: bytes | None) -> str | None:
    """A name as the model keeps it: os.fsdecode's string, exact (surrogates for bytes that are not UTF-8)."""
    if raw is None:
        return None
    return raw.decode("utf-8", "surrogateescape")


def decode_fs(text: str | None) -> str | None:
    """A name kept as fs_text() (or os.fsdecode) as decode_name renders it, for JSON."""
    if text is None:
        return None
    return decode_name(text.encode("utf-8", "surrogateescape"))


def terminal_safe(text: str) -> str:
    """For text and CSV: no control, bidi or invisible format character raw, backslashes doubled."""
    return _UNSAFE.sub(_escape, text)


def text_name(raw: bytes | None) -> str | None:
    """Raw name bytes as terminal_safe text."""
    if raw is None:
        return None
    return terminal_safe(raw.decode("utf-8", "surrogateescape"))


def errno_name(ret: int) -> str | None:
    if ret >= 0:
        return None
    return _errno.errorcode.get(-ret, "E%d" % -ret)
