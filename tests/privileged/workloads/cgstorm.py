"""A storm of short-lived cgroups, each used by a fresh process for a few file ops.

usage: cgstorm.py CGROUP_DIR COUNT WORKDIR EXPECTED_JSON

For i in 0..COUNT-1: make CGROUP_DIR/storm-<i>.service, start a child in it
(even i: fork, then the child moves itself in; odd i: clone3 with
CLONE_INTO_CGROUP, born inside), the child creates, writes and deletes
WORKDIR/f<i>, the cgroup is removed as soon as the child has exited.
Writes {file path: cgroup dir name} as JSON.
"""
import ctypes
import json
import os
import sys

CLONE_INTO_CGROUP = 0x200000000
SYS_clone3 = 435
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


class CloneArgs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size", "tls",
        "set_tid", "set_tid_size", "cgroup")]


def child_work(path: bytes) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"storm")
    os.close(fd)
    os.unlink(path)
    os._exit(0)


def fork_into(cg_dir: str, path: bytes) -> int:
    pid = os.fork()
    if pid == 0:
        with open(os.path.join(cg_dir, "cgroup.procs"), "w") as f:
            f.write("0")
        child_work(path)
    return pid


def clone3_into(cg_dir: str, path: bytes) -> int:
    cg_fd = os.open(cg_dir, os.O_RDONLY | os.O_DIRECTORY)
    args = CloneArgs(flags=CLONE_INTO_CGROUP, exit_signal=17, cgroup=cg_fd)
    pid = libc.syscall(SYS_clone3, ctypes.byref(args), ctypes.sizeof(args))
    if pid == 0:
        child_work(path)
    os.close(cg_fd)
    if pid < 0:
        raise OSError(ctypes.get_errno(), "clone3")
    return pid


root, count, workdir, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
expected = {}
for i in range(count):
    name = "storm-%03d.service" % i
    cg_dir = os.path.join(root, name)
    os.mkdir(cg_dir)
    path = os.path.join(workdir, "f%03d" % i)
    pid = (fork_into if i % 2 == 0 else clone3_into)(cg_dir, path.encode())
    _, status = os.waitpid(pid, 0)
    assert status == 0, status
    os.rmdir(cg_dir)
    expected[path] = name
with open(out, "w") as f:
    json.dump(expected, f)
