"""A file workload with hostile names; writes the events it expects as JSON.

usage: hostile.py BASE_DIR EXPECTED_JSON EXIT_STATUS

Every operation is one syscall made through os.*, so the expected list is
exact: (event, dir, path, path2) per operation, names rendered the way
fstrace renders them (UTF-8, other bytes as \\xNN).
"""
import json
import os
import sys

base = os.fsencode(sys.argv[1])
expected = []


def show(p):
    return p.decode("utf-8", "backslashreplace") if p is not None else None


def want(event, path, path2=None, is_dir=False):
    expected.append([event, is_dir, show(path), show(path2)])


NAMES = [
    b"plain.txt",
    b"with space and\nnewline",
    b"esc\x1b[31mred",
    b"bad-utf8-\xff\xfe",
    b"x" * 255,
]

d = base + b"/dir \n\x1b"
os.mkdir(d)
want("create", d, is_dir=True)
for name in NAMES:
    p = d + b"/" + name
    fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    want("create", p)
    os.write(fd, b"hello ")
    want("modify", p)
    os.write(fd, b"world\n")
    want("modify", p)
    os.close(fd)
    want("close_write", p)
    q = d + b"/" + name[:247] + b".renamed"  # still at most 255 bytes
    os.rename(p, q)
    want("rename", p, q)
    os.chmod(q, 0o600)
    want("attrib", q)
    os.truncate(q, 3)
    want("modify", q)
    fd = os.open(q, os.O_RDONLY)
    want("open", q)
    os.read(fd, 100)
    want("access", q)
    os.close(fd)
    want("close_nowrite", q)
    os.unlink(q)
    want("delete", q)

# a deep path, walked with relative names from a changing cwd
deep = d
os.chdir(d)
for i in range(30):
    comp = b"level%02d-" % i + b"d" * 90
    os.mkdir(comp)
    deep = deep + b"/" + comp
    want("create", deep, is_dir=True)
    os.chdir(comp)
fd = os.open(b"leaf", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
want("create", deep + b"/leaf")
os.close(fd)
want("close_write", deep + b"/leaf")
os.unlink(b"leaf")
want("delete", deep + b"/leaf")
for i in reversed(range(30)):
    os.chdir(b"..")
    os.rmdir(os.path.basename(deep))
    want("delete", deep, is_dir=True)
    deep = os.path.dirname(deep)
os.chdir(base)
os.rmdir(d)
want("delete", d, is_dir=True)

with open(sys.argv[2], "w") as f:
    json.dump(expected, f)
sys.exit(int(sys.argv[3]))
