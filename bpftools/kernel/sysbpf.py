"""The raw system calls fstrace makes itself, bound once: bpf(2) and perf_event_open(2).

x86_64 syscall numbers, like the rest of fstrace.  Each call returns what
the kernel returned, or -errno.
"""
from __future__ import annotations

import ctypes

NR_PERF_EVENT_OPEN = 298
NR_BPF = 321

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def syscall(nr: int, *args) -> int:
    ret = _libc.syscall(ctypes.c_long(nr), *args)
    return -ctypes.get_errno() if ret < 0 else ret


def bpf(cmd: int, attr: ctypes.Array) -> int:
    """bpf(cmd, attr, sizeof attr): a new fd, 0, or -errno."""
    return syscall(NR_BPF, ctypes.c_long(cmd), attr, ctypes.c_long(len(attr)))
