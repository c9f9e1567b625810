"""Opens a file, says so, waits for a line on stdin, then writes to it and closes it.

usage: preopened.py FILE

Started before fstrace, so the file was opened while nothing traced (or, for
the fsnotify backends, armed) its filesystem.
"""
import os
import sys

fd = os.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
print("open", flush=True)
sys.stdin.readline()
os.write(fd, b"written after fstrace started\n")
os.close(fd)
