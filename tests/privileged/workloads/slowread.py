"""One read that blocks a known time, among many fast operations.

    slowread.py DIR WAIT_S TRUTH.json [SYNC_FILE]

In DIR (made here): `fast` (a small file opened, read and written many
times: every operation fast) and `slow.fifo`.  The parent holds the FIFO
open for writing (O_RDWR never blocks), so the child's open of it does not
block either; the child's one read of it blocks until the parent writes, WAIT_S
seconds after the child said (through a pipe: not a file, not traced) that it
is about to read.  The child times that read around the syscall and writes
TRUTH.json: {"path": the FIFO, "read_ns": the read's time, "pid": the child}.
With SYNC_FILE, the child then writes it and fsyncs it (a sync event; on a
slowed filesystem, a slow one).
"""
import json
import os
import sys
import time

base, wait, truth = sys.argv[1], float(sys.argv[2]), sys.argv[3]
sync_file = sys.argv[4] if len(sys.argv) > 4 else None
fifo = os.path.join(base, "slow.fifo")
fast = os.path.join(base, "fast")
os.mkfifo(fifo)
with open(fast, "wb") as f:
    f.write(b"x" * 4096)
writer = os.open(fifo, os.O_RDWR)
ready_r, ready_w = os.pipe()

child = os.fork()
if child == 0:
    for _ in range(200):                    # fast: opens, reads and writes of a regular file
        fd = os.open(fast, os.O_RDWR)
        os.read(fd, 4096)
        os.pwrite(fd, b"y", 0)
        os.close(fd)
    fd = os.open(fifo, os.O_RDONLY)         # a writer holds it: no wait here
    os.write(ready_w, b".")
    t0 = time.monotonic_ns()
    os.read(fd, 1)                          # the one slow operation: waits for the parent's write
    took = time.monotonic_ns() - t0
    os.close(fd)
    if sync_file:
        sfd = os.open(sync_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(sfd, b"z" * 4096)
        os.fsync(sfd)
        os.close(sfd)
    with open(truth, "w") as f:
        json.dump({"path": fifo, "read_ns": took, "pid": os.getpid()}, f)
    os._exit(0)

os.read(ready_r, 1)
time.sleep(wait)
os.write(writer, b"!")
_, status = os.waitpid(child, 0)
os.close(writer)
sys.exit(os.waitstatus_to_exitcode(status))
