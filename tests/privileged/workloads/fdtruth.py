"""Workloads whose fd numbers lie: each scenario prints nothing; the test reads the trace.

usage: fdtruth.py SCENARIO BASE
"""
import os
import sys
import threading

scenario, base = sys.argv[1], sys.argv[2]
os.chdir(base)


def pipe_child_reuses_fds():
    """A forked child writes to a pipe while its parent reuses the pipe's fd numbers for two files."""
    r, w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(go_w)
        os.read(go_r, 1)                 # the parent has reopened r's and w's numbers by now
        for _ in range(20):
            os.write(w, b"x" * 10)
            os.read(r, 10)
        os._exit(0)
    os.close(r)
    os.close(w)
    a = os.open("/etc/hostname", os.O_RDONLY)
    b = os.open("/etc/passwd", os.O_RDONLY)
    assert {a, b} == {r, w}, (a, b, r, w)
    os.write(go_w, b"!")
    os.waitpid(pid, 0)
    os.close(a)
    os.close(b)


def close_write_20():
    for i in range(20):
        fd = os.open("f%02d" % i, os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, b"data")
        os.close(fd)


def creat_append_existing():
    open("existing", "wb").close()
    fd = os.open("existing", os.O_CREAT | os.O_APPEND | os.O_WRONLY)
    os.close(fd)


def futimens():
    open("stamped", "wb").close()
    fd = os.open("stamped", os.O_RDONLY)
    os.utime(fd)
    os.close(fd)


def copy_range():
    with open("src", "wb") as f:
        f.write(b"0123456789")
    s = os.open("src", os.O_RDONLY)
    d = os.open("dst", os.O_CREAT | os.O_WRONLY, 0o644)
    os.copy_file_range(s, d, 10)
    os.close(s)
    os.close(d)


def dups():
    """dup, dup2, dup3, F_DUPFD, close_range, a CLONE_FILES thread, fd reuse: each write names its file."""
    import ctypes
    import fcntl
    a = os.open("a", os.O_CREAT | os.O_WRONLY, 0o644)
    b = os.dup(a)
    os.write(b, b"1")                    # a
    c = os.open("c", os.O_CREAT | os.O_WRONLY, 0o644)
    os.dup2(c, b)                        # b now c
    os.write(b, b"2")                    # c
    d = fcntl.fcntl(a, fcntl.F_DUPFD, 100)
    os.write(d, b"3")                    # a
    os.dup2(c, d, inheritable=False)     # dup3
    os.write(d, b"4")                    # c
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.syscall(436, b, b, 0) == 0   # close_range(2)
    assert libc.syscall(436, d, d, 0) == 0
    t = threading.Thread(target=lambda: os.write(c, b"5"))      # c, from a thread sharing the table
    t.start()
    t.join()
    os.close(a)
    e = os.open("e", os.O_CREAT | os.O_WRONLY, 0o644)           # reuses a's number
    os.write(e, b"6")                    # e
    os.close(e)
    os.close(c)


def left_open():
    """Files a process leaves open are closed at its exit; one a child still holds is not closed yet."""
    w = os.open("written", os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(w, b"x")
    os.open("read", os.O_RDONLY | os.O_CREAT, 0o644)
    pid = os.fork()
    if pid == 0:
        os.open("child", os.O_CREAT | os.O_WRONLY, 0o644)
        os._exit(0)                      # closes child; written and read are the parent's too
    os.waitpid(pid, 0)
    os._exit(0)


{"leftopen": left_open, "pipe": pipe_child_reuses_fds, "close20": close_write_20, "append": creat_append_existing,
 "futimens": futimens, "copy": copy_range, "dups": dups}[scenario]()
