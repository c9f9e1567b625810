"""Turning raw names into text that is safe to print and faithful to the bytes."""
from __future__ import annotations

import errno as _errno

_CONTROL = {i: "\\x%02x" % i for i in list(range(0x20)) + [0x7F] + list(range(0x80, 0xA0))}
_CONTROL.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})


def decode_name(raw: bytes | None) -> str | None:
    """UTF-8 as is; every byte that is not UTF-8 becomes \\xNN (never dropped)."""
    if raw is None:
        return None
    return raw.decode("utf-8", "backslashreplace")


def decode_fs(text: str | None) -> str | None:
    """A path decoded with os.fsdecode (surrogates for bytes that are not UTF-8) as decode_name renders it."""
    if text is None:
        return None
    return decode_name(text.encode("utf-8", "surrogateescape"))


def terminal_safe(text: str) -> str:
    """No control character (C0, DEL, C1) reaches a terminal raw."""
    return text.translate(_CONTROL)


def errno_name(ret: int) -> str | None:
    if ret >= 0:
        return None
    return _errno.errorcode.get(-ret, "E%d" % -ret)
