"""As many open, one-byte read, close rounds on one file as fit in a time: the counters' exactness at full speed.

usage: spin.py FILE SECONDS     (FILE holds at least one byte)
Prints how many rounds it made.
"""
import os
import sys
import time

path, seconds = sys.argv[1], float(sys.argv[2])
end = time.monotonic() + seconds
n = 0
while time.monotonic() < end:
    for _ in range(1000):
        fd = os.open(path, os.O_RDONLY)
        os.read(fd, 1)
        os.close(fd)
    n += 1000
print(n)
