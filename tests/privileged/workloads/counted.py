"""N of each: create, write (modify), close_write, rename, delete -- nothing else writes or creates.

usage: python3 -B -I counted.py DIR N

One syscall per os.* call; the interpreter itself only opens and reads
(-B: no bytecode files), and nothing is printed.
"""
import os
import sys

base, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    path = os.path.join(base, "f%d" % i)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.write(fd, b"x")
    os.close(fd)
    os.rename(path, path + ".old")
    os.unlink(path + ".old")
