"""A file opened and closed while another process reads its /proc/PID/fd link, as lsof does.

usage: observed.py DIR SECONDS EXPECTED.json

Opens and closes DIR/watched for SECONDS (a pause every 100 rounds, so that
tracers keep up) while a child, on another CPU, reads /proc/<this pid>/fd/<the
fd> as fast as it can.  Reading the link holds a reference to the file for a
moment: a close that comes then is not the last reference, and the file is
released, and closed for fsnotify, when the reader lets go.  Writes
{"path", "rounds", "spinner", "observer", "reads"} (reads: the links the child
read while the file was open; each can take one close from the spinner).
"""
import fcntl
import json
import os
import sys
import time

base, seconds, expected = sys.argv[1], float(sys.argv[2]), sys.argv[3]
path = os.path.join(base, "watched")
open(path, "w").close()


def high(fd: int) -> int:
    """fd moved out of the way: closing it leaves the lowest free number as it was"""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 100)
    os.close(fd)
    return moved


stop_r, stop_w = map(high, os.pipe())
count_r, count_w = map(high, os.pipe())
fd = os.open(path, os.O_RDONLY)          # the number every open below gets
os.close(fd)
link = "/proc/%d/fd/%d" % (os.getpid(), fd)

cpus = sorted(os.sched_getaffinity(0))   # each on a CPU of its own, so that they truly overlap
observer = os.fork()
if observer == 0:
    os.sched_setaffinity(0, cpus[-1:])
    os.close(stop_w)
    os.close(count_r)
    os.set_blocking(stop_r, False)
    reads = 0
    while True:
        for _ in range(512):
            try:
                if os.readlink(link) == path:
                    reads += 1
            except FileNotFoundError:
                pass
        try:
            if os.read(stop_r, 1) == b"":
                break
        except BlockingIOError:
            pass
    os.write(count_w, str(reads).encode())
    os._exit(0)

os.sched_setaffinity(0, cpus[:1])
os.close(stop_r)
os.close(count_w)
time.sleep(0.05)                         # the observer is reading
rounds = 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    for _ in range(100):
        os.close(os.open(path, os.O_RDONLY))
    rounds += 100
    time.sleep(0.0002)
os.close(stop_w)
reads = int(os.read(count_r, 64))
os.waitpid(observer, 0)
with open(expected, "w") as f:
    json.dump({"path": path, "rounds": rounds, "spinner": os.getpid(), "observer": observer, "reads": reads}, f)
