#!/usr/bin/env python3
"""The workload of tests/replay/hostile.rec: names no terminal or parser should trust.

    hostile.py WORKDIR

Under its own process name (newline, ESC, a byte that is not UTF-8), it
creates, writes, renames and removes files whose names hold newlines,
escape sequences, quotes, backslashes, controls, C1 controls, bidi and
line-separator characters, UTF-8 of every length and bytes that are not
UTF-8 (overlong, surrogate, cut short), 255-byte names, names with //, .
and .., and, from a directory chain deeper than PATH_MAX, 255-byte names
whose absolute paths are longer than 4096 bytes.
"""
import ctypes
import os
import shutil
import sys

NAMES = [
    b"nl\nline", b"esc\x1b[31mred", b"bad\xffutf8", b'quote"q', b"back\\slash", b"del\x7f", b"c1\xc2\x85x",
    b"ls\xe2\x80\xa8ps\xe2\x80\xa9", b"rtl\xe2\x80\xaetxt", b"zw\xe2\x80\x8bsp", b"bom\xef\xbb\xbf", b"emoji\xf0\x9f\x98\x80",
    b"overlong\xc0\xaf", b"surrogate\xed\xa0\x80", b"cut\xe2\x82", b"cut4\xf0\x9f\x98", b"tab\tcr\r", b"ctl\x01\x1f",
    b"caf\xc3\xa9", b"\xf4\x90\x80\x80toobig", b"L" * 255, b"\xff" * 255, b"\xe2\x80\xae" * 85, b"nl\\nname",
]


def main() -> None:
    w = os.fsencode(sys.argv[1])
    shutil.rmtree(w, ignore_errors=True)
    os.mkdir(w)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(15, b"ev\x1b[2J\xff\nil\\x", 0, 0, 0)        # PR_SET_NAME: the comm of every event below
    for name in NAMES:
        path = os.path.join(w, name)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.write(fd, b"x")
        os.close(fd)
        os.rename(path, path[:-1] + b"2" if len(name) == 255 else path + b".2")
    for name in os.listdir(w):
        os.unlink(os.path.join(w, name))
    # names a path normaliser has to collapse
    os.mkdir(w + b"/d")
    os.mkdir(w + b"/d/a")
    os.close(os.open(w + b"//d/./a/../b", os.O_CREAT | os.O_WRONLY, 0o600))
    os.unlink(w + b"/d/./b")
    os.rmdir(w + b"/d/a/")
    os.rmdir(w + b"/d/")
    # deeper than PATH_MAX: 20 directories of 255 bytes, entered one at a time
    here = os.getcwd()
    os.chdir(w)
    level = b"D" * 254
    for i in range(20):
        os.mkdir(level + b"%x" % (i % 16))
        os.chdir(level + b"%x" % (i % 16))
    for name in (b"F" * 255, b"nl\n" + b"\xff" * 252):
        fd = os.open(name, os.O_CREAT | os.O_RDWR, 0o600)
        os.write(fd, b"y")
        os.close(fd)
        os.rename(name, name[:-1] + b"2")
        os.unlink(name[:-1] + b"2")
    for i in reversed(range(20)):
        os.chdir(b"..")
        os.rmdir(level + b"%x" % (i % 16))
    os.chdir(here)
    os.rmdir(w)


if __name__ == "__main__":
    main()
