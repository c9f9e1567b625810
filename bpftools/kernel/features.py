"""Can this kernel hook a function with fentry or a kprobe?  Asked in milliseconds.

BCC needs tens of seconds to compile a program, and an fentry program that
the kernel cannot attach only fails after that.  These probes ask the kernel
directly with the smallest possible program (``r0 = 0; exit``) or a bare
kprobe perf event, and return the kernel's own reason when it says no.
x86_64 syscall numbers, like the rest of fstrace.
"""
from __future__ import annotations

import ctypes
import errno
import os
import struct

from bpftools.kernel.sysbpf import NR_PERF_EVENT_OPEN, bpf, syscall

BPF_PROG_LOAD = 5
BPF_RAW_TRACEPOINT_OPEN = 17
BPF_PROG_TYPE_TRACING = 26
BPF_TRACE_FENTRY = 24
PERF_FLAG_FD_CLOEXEC = 8
KPROBE_PMU_TYPE = "/sys/bus/event_source/devices/kprobe/type"
ENOTSUPP = 524        # kernel-internal errno, leaks out of BPF attach paths

# r0 = 0; exit
_NOP_PROGRAM = bytes([0xB7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0])


def errno_text(err: int) -> str:
    if err == ENOTSUPP:
        return "ENOTSUPP (524)"
    return "%s (%s)" % (errno.errorcode.get(err, "E%d" % err), os.strerror(err))


def _split(ret: int) -> tuple[int, int]:
    """(what the kernel returned, its errno or 0)."""
    return (ret, 0) if ret >= 0 else (-1, -ret)


def _bpf(cmd: int, attr: ctypes.Array) -> tuple[int, int]:
    return _split(bpf(cmd, attr))


def fentry_error(btf_id: int) -> str | None:
    """None if an fentry program attaches to the kernel function with this BTF id, else why not."""
    insns = ctypes.create_string_buffer(_NOP_PROGRAM, len(_NOP_PROGRAM))
    license_ = ctypes.create_string_buffer(b"GPL")
    # union bpf_attr for BPF_PROG_LOAD, up to attach_btf_id (include/uapi/linux/bpf.h)
    attr = ctypes.create_string_buffer(120)
    struct.pack_into("=IIQQ", attr, 0, BPF_PROG_TYPE_TRACING, len(_NOP_PROGRAM) // 8,
                     ctypes.addressof(insns), ctypes.addressof(license_))
    struct.pack_into("=16s", attr, 48, b"fstrace_probe")
    struct.pack_into("=I", attr, 68, BPF_TRACE_FENTRY)
    struct.pack_into("=I", attr, 108, btf_id)
    prog_fd, err = _bpf(BPF_PROG_LOAD, attr)
    if prog_fd < 0:
        return "loading an fentry program failed: %s" % errno_text(err)
    try:
        open_attr = ctypes.create_string_buffer(16)      # raw_tracepoint: name (NULL), prog_fd
        struct.pack_into("=QI", open_attr, 0, 0, prog_fd)
        link_fd, err = _bpf(BPF_RAW_TRACEPOINT_OPEN, open_attr)
        if link_fd < 0:
            return "attaching an fentry program failed: %s" % errno_text(err)
        os.close(link_fd)
        return None
    finally:
        os.close(prog_fd)


def kprobe_error(func: str, pmu_type_file: str = KPROBE_PMU_TYPE) -> str | None:
    """None if a kprobe can be placed on the kernel function func, else why not."""
    try:
        with open(pmu_type_file) as f:
            pmu_type = int(f.read())
    except OSError:
        return "this kernel has no kprobe support (%s is missing)" % pmu_type_file
    name = ctypes.create_string_buffer(func.encode())
    # struct perf_event_attr up to config2 (PERF_ATTR_SIZE_VER1 = 72 bytes)
    attr = ctypes.create_string_buffer(72)
    struct.pack_into("=IIQQ", attr, 0, pmu_type, len(attr), 0, 1)   # type, size, config, sample_period
    struct.pack_into("=QQ", attr, 56, ctypes.addressof(name), 0)    # kprobe_func, probe_offset
    fd, err = _split(syscall(NR_PERF_EVENT_OPEN, attr, ctypes.c_int(-1), ctypes.c_int(0), ctypes.c_int(-1),
                             ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC)))
    if fd < 0:
        return "placing a kprobe on %s() failed: %s" % (func, errno_text(err))
    os.close(fd)
    return None
