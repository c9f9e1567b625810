"""Paths past what the fsnotify backends build in the kernel.

usage: deep.py BASE_DIR

BASE/deep: 70 nested directories "d", then a file "leaf" (more components
than FST_DEPTH_MAX); BASE/long: 20 nested 250-byte names, then "leaf" (more
bytes than FST_PATH_MAX).  Relative names from a changing cwd, as a shell
would use.
"""
import os
import sys

for sub, names in ((b"deep", [b"d"] * 70), (b"long", [b"%02d" % i + b"n" * 248 for i in range(20)])):
    os.chdir(os.fsencode(sys.argv[1]))
    os.mkdir(sub)
    os.chdir(sub)
    for name in names:
        os.mkdir(name)
        os.chdir(name)
    os.close(os.open(b"leaf", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
