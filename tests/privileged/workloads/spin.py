"""As many open+close pairs of one file as fit in a time: the counters' exactness at full speed.

usage: spin.py FILE SECONDS
Prints how many pairs it made.
"""
import os
import sys
import time

path, seconds = sys.argv[1], float(sys.argv[2])
end = time.monotonic() + seconds
n = 0
while time.monotonic() < end:
    for _ in range(1000):
        os.close(os.open(path, os.O_RDONLY))
    n += 1000
print(n)
