"""Known bytes through every syscall of the read/write family, each issued by number.

    rwbytes.py DIR EXPECTED.json

Files in DIR (made here):
  family   written by write, pwrite64, writev, pwritev, pwritev2, then read back by
           read, pread64, readv, preadv, preadv2; a read at the end of the file
           (0 bytes) and a write to a read-only fd (EBADF, no bytes)
  src      written by write, then read by sendfile, copy_file_range and splice
  dst      written by sendfile, copy_file_range and splice

EXPECTED.json gets {path: {"read_bytes": n, "write_bytes": n, "calls": {syscall: [bytes, ...]}}}:
the return value of every call, as the kernel gave it.
"""
import ctypes
import json
import os
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = {"read": 0, "write": 1, "pread64": 17, "pwrite64": 18, "readv": 19, "writev": 20, "sendfile": 40,
      "splice": 275, "preadv": 295, "pwritev": 296, "copy_file_range": 326, "preadv2": 327, "pwritev2": 328}


class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def iov(bufs):
    arr = (IoVec * len(bufs))()
    for i, b in enumerate(bufs):
        arr[i].base = ctypes.cast(b, ctypes.c_void_p)
        arr[i].len = len(b)
    return arr, len(bufs)


def call(name, *args) -> int:
    ret = libc.syscall(NR[name], *args)
    if ret < 0:
        return -ctypes.get_errno()
    return ret


def main():
    d, expected_file = sys.argv[1], sys.argv[2]
    expected: dict = {}

    def note(path, name, ret, kind):
        rec = expected.setdefault(path, {"read_bytes": 0, "write_bytes": 0, "calls": {}})
        rec["calls"].setdefault(name, []).append(ret)
        if ret > 0:
            rec[kind] += ret

    fam = os.path.join(d, "family")
    fd = os.open(fam, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    w = lambda n, ch: ctypes.create_string_buffer(ch * n, n)    # noqa: E731
    note(fam, "write", call("write", fd, w(1000, b"a"), 1000), "write_bytes")
    note(fam, "pwrite64", call("pwrite64", fd, w(2000, b"b"), 2000, ctypes.c_long(1000)), "write_bytes")
    os.lseek(fd, 3000, os.SEEK_SET)
    bufs = [w(300, b"c"), w(400, b"d")]
    arr, n = iov(bufs)
    note(fam, "writev", call("writev", fd, arr, n), "write_bytes")
    bufs = [w(500, b"e")]
    arr, n = iov(bufs)
    note(fam, "pwritev", call("pwritev", fd, arr, n, ctypes.c_long(3700), ctypes.c_long(0)), "write_bytes")
    bufs = [w(250, b"f"), w(350, b"g")]
    arr, n = iov(bufs)
    note(fam, "pwritev2", call("pwritev2", fd, arr, n, ctypes.c_long(4200), ctypes.c_long(0), 0), "write_bytes")
    os.lseek(fd, 0, os.SEEK_SET)
    r = ctypes.create_string_buffer(4096)
    note(fam, "read", call("read", fd, r, 100), "read_bytes")
    note(fam, "pread64", call("pread64", fd, r, 200, ctypes.c_long(100)), "read_bytes")
    rb = [ctypes.create_string_buffer(50), ctypes.create_string_buffer(60)]
    arr, n = iov(rb)
    note(fam, "readv", call("readv", fd, arr, n), "read_bytes")
    rb = [ctypes.create_string_buffer(70)]
    arr, n = iov(rb)
    note(fam, "preadv", call("preadv", fd, arr, n, ctypes.c_long(500), ctypes.c_long(0)), "read_bytes")
    rb = [ctypes.create_string_buffer(80)]
    arr, n = iov(rb)
    note(fam, "preadv2", call("preadv2", fd, arr, n, ctypes.c_long(4700), ctypes.c_long(0), 0), "read_bytes")
    os.lseek(fd, 0, os.SEEK_END)
    note(fam, "read", call("read", fd, r, 4096), "read_bytes")        # at the end: 0 bytes
    os.close(fd)
    ro = os.open(fam, os.O_RDONLY)
    failed = call("write", ro, w(10, b"x"), 10)                        # EBADF: no bytes
    assert failed < 0, failed
    os.close(ro)

    src, dst = os.path.join(d, "src"), os.path.join(d, "dst")
    s = os.open(src, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    note(src, "write", call("write", s, w(8192, b"s"), 8192), "write_bytes")
    t = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    off = ctypes.c_long(0)
    ret = call("sendfile", t, s, ctypes.byref(off), 3000)
    note(src, "sendfile", ret, "read_bytes")
    note(dst, "sendfile", ret, "write_bytes")
    off_in = ctypes.c_long(3000)
    ret = call("copy_file_range", s, ctypes.byref(off_in), t, None, 4000, 0)
    note(src, "copy_file_range", ret, "read_bytes")
    note(dst, "copy_file_range", ret, "write_bytes")
    pr, pw = os.pipe()
    off_in = ctypes.c_long(7000)
    ret = call("splice", s, ctypes.byref(off_in), pw, None, 1192, 0)      # file -> pipe: src read
    note(src, "splice", ret, "read_bytes")
    ret = call("splice", pr, None, t, None, 1192, 0)                      # pipe -> file: dst written
    note(dst, "splice", ret, "write_bytes")
    for f in (pr, pw, s, t):
        os.close(f)
    with open(expected_file, "w") as f:
        json.dump(expected, f)


if __name__ == "__main__":
    main()
