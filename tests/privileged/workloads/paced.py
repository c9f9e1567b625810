"""File operations at a steady rate: create, write, close, unlink = 4 events per operation.

usage: paced.py DIR OPS_PER_SECOND SECONDS [DONE_FILE]

Operations are paced against absolute deadlines, so the rate holds over any
window longer than a few milliseconds.  Prints the number of operations
made when it ends (and writes it to DONE_FILE).
"""
import os
import sys
import time

base, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
start = time.monotonic()
n = 0
while True:
    due = start + n / rate
    now = time.monotonic()
    if due - start >= seconds:
        break
    if due > now:
        time.sleep(due - now)
    path = os.path.join(base, "f%d" % (n % 50))
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"x")
    os.close(fd)
    os.unlink(path)
    n += 1
print(n, flush=True)
if len(sys.argv) > 4:
    with open(sys.argv[4], "w") as f:
        f.write(str(n))
