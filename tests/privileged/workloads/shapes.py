"""Files and directories in every shape the backends see differently; writes what each should report.

usage: shapes.py BASE_DIR EXPECTED_JSON

One syscall per os.* call.  Each expected entry is [event, dir, path, path2,
only]: only is null (every backend), "tracepoint" or "fsnotify" (fentry and
kprobe); dir is a bool, or {"tracepoint": bool, "fsnotify": bool} where the
backends differ.  The differences are the ones docs/backends.md lists.
"""
import json
import os
import sys

base = os.fsencode(sys.argv[1])
expected = []
DIR_ONLY_FSNOTIFY_KNOWS = {"tracepoint": False, "fsnotify": True}


def show(p):
    return p.decode("utf-8", "backslashreplace") if p is not None else None


def want(event, path, path2=None, is_dir=False, only=None):
    expected.append([event, is_dir, show(path), show(path2), only])


# directories: the tracepoint backend knows a directory from mkdir, rmdir and open files (their inode),
# not from a name it only passes on (rename, chmod)
d = base + b"/a dir"
os.mkdir(d)
want("create", d, is_dir=True)
d2 = base + b"/renamed\tdir"
os.rename(d, d2)
want("rename", d, d2, is_dir=DIR_ONLY_FSNOTIFY_KNOWS)
os.chmod(d2, 0o700)
want("attrib", d2, is_dir=DIR_ONLY_FSNOTIFY_KNOWS)
fd = os.open(d2, os.O_RDONLY | os.O_DIRECTORY)
want("open", d2, is_dir=True)
os.close(fd)
want("close_nowrite", d2, is_dir=True)

# a file: written, truncated through its fd, a write of nothing
f = d2 + b"/f"
fd = os.open(f, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
want("create", f)
os.write(fd, b"data")
want("modify", f)
os.ftruncate(fd, 2)
want("modify", f)
os.write(fd, b"")
want("modify", f, only="tracepoint")         # fsnotify: nothing was written
os.close(fd)
want("close_write", f)

# O_CREAT on a file that exists: an open, on every backend (what the open did, not its flags)
fd = os.open(f, os.O_CREAT | os.O_WRONLY, 0o644)
want("open", f)
os.close(fd)
want("close_write", f)

# reads: one that returns data, one at the end of the file
fd = os.open(f, os.O_RDONLY)
want("open", f)
os.read(fd, 2)
want("access", f)
os.read(fd, 10)
want("access", f, only="tracepoint")         # fsnotify: nothing was read
os.close(fd)
want("close_nowrite", f)

# more names for one file, times, a rename over an existing file
hard = d2 + b"/hard link"
os.link(f, hard)
want("create", hard)
sym = d2 + b"/sym\x1b"
os.symlink(b"f", sym)
want("create", sym)
os.utime(f, (1, 1))
want("attrib", f)
g = d2 + b"/g\xff"
fd = os.open(g, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
want("create", g)
os.close(fd)
want("close_write", g)
os.rename(g, f)
want("rename", g, f)

for name in (sym, hard, f):
    os.unlink(name)
    want("delete", name)
os.rmdir(d2)
want("delete", d2, is_dir=True)

with open(sys.argv[2], "w") as out:
    json.dump(expected, out)
