"""A process family with known file operations: a main process, a daemon and a grandchild in a nested cgroup.

usage: family.py DIR CGROUP2_MOUNT EXPECTED_JSON EXIT_STATUS

* main: names relative to its cwd (DIR): create, write, rename, chmod, read,
  mkdir/rmdir, create+unlink in the subdirectory; then exits with
  EXIT_STATUS while the daemon is still writing.
* daemon: double fork + setsid, outlives main; names relative to a directory
  fd; writes for a moment after main has gone.
* nested: a grandchild that moves itself into <its cgroup>/nested and uses
  absolute names; main removes the nested cgroup once it has exited.

Every operation is one os.* call (one syscall), so the counts are exact;
they go to EXPECTED_JSON per process (with its cgroup, relative to the
cgroup2 root) and per file, as fstrace names events.  Children leave with
os._exit: no interpreter shutdown, no stray file activity.
"""
import json
import os
import sys
import time
from collections import defaultdict

base, mount, expected_path, status = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with open("/proc/self/cgroup") as f:
    own_cgroup = next(line.split("::", 1)[1].strip() for line in f if line.startswith("0::"))
nested_cgroup = own_cgroup.rstrip("/") + "/nested"


class Counted:
    """Who did what to which file, as the process goes."""

    def __init__(self, role, cgroup):
        self.role, self.cgroup = role, cgroup
        self.files = defaultdict(lambda: defaultdict(int))

    def did(self, event, path, n=1):
        self.files[os.path.join(base, path)][event] += n

    def record(self):
        return {"role": self.role, "pid": os.getpid(), "cgroup": self.cgroup,
                "files": {p: dict(ev) for p, ev in self.files.items()}}


def pipe_send(fd, obj):
    os.write(fd, json.dumps(obj).encode() + b"\n")
    os.close(fd)


def daemon(w):
    c = Counted("daemon", own_cgroup)
    dfd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    c.did("open", "")
    fd = os.open("d.log", os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644, dir_fd=dfd)
    c.did("create", "d.log")
    time.sleep(0.3)                          # main is gone by now
    for _ in range(5):
        os.write(fd, b"tick\n")
        c.did("modify", "d.log")
        time.sleep(0.1)
    os.close(fd)
    c.did("close_write", "d.log")
    os.unlink("d.log", dir_fd=dfd)
    c.did("delete", "d.log")
    os.close(dfd)
    c.did("close_nowrite", "")
    pipe_send(w, c.record())


def nested(w):
    with open(os.path.join(mount, nested_cgroup.lstrip("/"), "cgroup.procs"), "w") as f:
        f.write("0")
    c = Counted("nested", nested_cgroup)
    p = os.path.join(base, "n.txt")
    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
    c.did("create", "n.txt")
    os.write(fd, b"a")
    os.write(fd, b"b")
    c.did("modify", "n.txt", 2)
    os.close(fd)
    c.did("close_write", "n.txt")
    os.unlink(p)
    c.did("delete", "n.txt")
    pipe_send(w, c.record())


def main():
    os.mkdir(os.path.join(mount, nested_cgroup.lstrip("/")))
    r_daemon, w_daemon = os.pipe()
    if os.fork() == 0:                       # the daemon's parent: forks it and leaves at once
        os.close(r_daemon)
        os.setsid()
        if os.fork() == 0:
            daemon(w_daemon)
        os._exit(0)
    os.close(w_daemon)
    r_nested, w_nested = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(r_nested)
        if os.fork() == 0:                   # the grandchild
            nested(w_nested)
            os._exit(0)
        os.wait()
        os._exit(0)
    os.close(w_nested)

    c = Counted("main", own_cgroup)
    os.chdir(base)
    fd = os.open("a.txt", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    c.did("create", "a.txt")
    for _ in range(3):
        os.write(fd, b"data")
    c.did("modify", "a.txt", 3)
    os.close(fd)
    c.did("close_write", "a.txt")
    os.rename("a.txt", "b.txt")
    c.did("rename", "a.txt")                 # counted for the old name
    os.chmod("b.txt", 0o600)
    c.did("attrib", "b.txt")
    fd = os.open("b.txt", os.O_RDONLY)
    c.did("open", "b.txt")
    os.read(fd, 2)
    os.read(fd, 100)
    c.did("access", "b.txt", 2)
    os.close(fd)
    c.did("close_nowrite", "b.txt")
    try:
        os.open("missing", os.O_RDONLY)
    except FileNotFoundError:
        c.did("open:ENOENT", "missing")
    os.mkdir("sub")
    c.did("create", "sub")
    fd = os.open("sub/c", os.O_CREAT | os.O_WRONLY, 0o644)
    c.did("create", "sub/c")
    os.close(fd)
    c.did("close_write", "sub/c")
    os.unlink("sub/c")
    c.did("delete", "sub/c")
    os.rmdir("sub")
    c.did("delete", "sub")
    os.unlink("b.txt")
    c.did("delete", "b.txt")

    os.waitpid(child, 0)
    nested_rec = json.loads(os.read(r_nested, 65536))
    nested_dir = os.path.join(mount, nested_cgroup.lstrip("/"))
    for _ in range(200):                     # the grandchild's exit empties the cgroup a moment later
        try:
            os.rmdir(nested_dir)
            break
        except OSError:
            time.sleep(0.01)
    with open(expected_path, "w") as f:
        json.dump({"cgroup": own_cgroup, "nested": nested_cgroup, "main": c.record(), "nested_child": nested_rec},
                  f)
    # the daemon reports through its pipe once done; a helper reads it after we are gone
    if os.fork() == 0:
        rec = json.loads(os.read(r_daemon, 65536))
        with open(expected_path) as f:
            doc = json.load(f)
        doc["daemon"] = rec
        with open(expected_path + ".tmp", "w") as f:
            json.dump(doc, f)
        os.rename(expected_path + ".tmp", expected_path)
        os._exit(0)
    os._exit(status)


main()
