"""The BCC layer, and the only module that imports bcc.

Checks what the kernel and the machine offer, builds the BPF program from the
C files in bpf/ with options as -D flags, loads and attaches it, and hands
every ring-buffer record to a callback as bytes.  BCC's bare Exceptions become
the typed errors of bpftools/errors.py here.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import re
from dataclasses import dataclass, field
from importlib import resources

from . import events
from .errors import BpfLoadError, MissingDependency, MissingKernelFeature, NotPrivileged
from .ringbuf import RingBuffer

BACKENDS = ("tracepoint",)
TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39

# Tracepoints the tracepoint backend attaches, and what is lost without each.
BACKEND_TRACEPOINTS = {
    "tracepoint": {
        "raw_syscalls/sys_enter": None,
        "raw_syscalls/sys_exit": None,
        "sched/sched_process_fork": None,
    },
}
CGROUP_TRACEPOINTS = ("cgroup/cgroup_mkdir", "cgroup/cgroup_rmdir")


def _effective_caps() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def check_privileges() -> None:
    caps = _effective_caps()
    if os.geteuid() == 0 or caps >> CAP_SYS_ADMIN & 1 or (caps >> CAP_BPF & 1 and caps >> CAP_PERFMON & 1):
        return
    raise NotPrivileged("fstrace loads BPF programs and needs root (or CAP_SYS_ADMIN): run it with sudo")


def tracefs() -> str:
    """The tracefs mount, mounting it at /sys/kernel/tracing if nothing is mounted."""
    for d in TRACEFS_DIRS:
        if os.path.isdir(os.path.join(d, "events")):
            return d
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"tracefs", TRACEFS_DIRS[0].encode(), b"tracefs",
                  MS_NOSUID | MS_NODEV | MS_NOEXEC, None) != 0:
        err = ctypes.get_errno()
        raise MissingKernelFeature(
            "tracefs", "not mounted and mounting it failed (%s): mount -t tracefs tracefs %s"
            % (os.strerror(err), TRACEFS_DIRS[0]))
    return TRACEFS_DIRS[0]


def tracepoint_exists(tracefs_dir: str, name: str) -> bool:
    return os.path.isdir(os.path.join(tracefs_dir, "events", name))


def missing_syscalls(tracefs_dir: str) -> list[str]:
    """Followed syscalls this kernel does not have (they simply never occur)."""
    return sorted(
        name for name in events.SYSCALL_NAMES.values()
        if not tracepoint_exists(tracefs_dir, "syscalls/sys_enter_" + name)
    )


@dataclass(frozen=True)
class KernelHeaders:
    path: str
    version: str | None
    running: str

    @property
    def matches(self) -> bool:
        return self.version == self.running

    def describe(self) -> str:
        if self.matches:
            return "headers %s" % self.version
        return "headers %s do not match running kernel %s" % (self.version or "of unknown version", self.running)


def kernel_headers(release: str | None = None) -> KernelHeaders:
    release = release or os.uname().release
    build = "/lib/modules/%s/build" % release
    if not os.path.exists(os.path.join(build, "include")):
        raise MissingDependency(
            "no kernel headers at %s: run `make install` (it installs linux-headers-%s "
            "or links the distribution's generic headers)" % (build, release))
    version = None
    for name in ("include/generated/utsrelease.h", "include/config/kernel.release"):
        try:
            with open(os.path.join(build, name)) as f:
                text = f.read()
        except OSError:
            continue
        m = re.search(r'UTS_RELEASE\s+"([^"]+)"', text)
        version = m.group(1) if m else text.strip() or None
        break
    return KernelHeaders(os.path.realpath(build), version, release)


def import_bcc():
    """Import bcc after making sure tracefs is mounted (bcc picks its path at import)."""
    tracefs()
    try:
        import bcc
    except ImportError:
        raise MissingDependency(
            "BCC's Python module is not installed: run `make install` "
            "(apt-get install python3-bpfcc; a venv needs --system-site-packages)") from None
    return bcc


@dataclass(frozen=True)
class ProbeConfig:
    """Everything that shapes the BPF program; each becomes a -D flag."""

    backend: str = "tracepoint"
    events: tuple[str, ...] = events.DEFAULT_EVENTS
    failed: bool = False
    pids: tuple[int, ...] = ()
    comms: tuple[str, ...] = ()
    cgroup_filter: bool = False
    cgroup_min_level: int = 0
    ring_pages: int = 2048
    wake_every: int = 64
    aggregate: bool = False          # count in the kernel (top, report) instead of sending events
    agg_entries: int = 65536         # entries of each counter map


@dataclass
class LoadReport:
    """What was attached, and what was left out and why."""

    backend: str
    tracepoints: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    missing_syscalls: list[str] = field(default_factory=list)
    headers: KernelHeaders | None = None


def bpf_text(parts) -> str:
    src = resources.files("bpftools.bpf")
    return "\n".join(src.joinpath(p).read_text() for p in parts)


def cflags(cfg: ProbeConfig, self_tgid: int, bpf_dir: str) -> list[str]:
    flags = [
        "-I" + bpf_dir,
        "-DFST_SELF_TGID=%d" % self_tgid,
        "-DFST_EVENT_MASK=%du" % events.event_mask(cfg.events),
        "-DFST_RB_PAGES=%d" % cfg.ring_pages,
        "-DFST_WAKE_EVERY=%d" % cfg.wake_every,
    ]
    if cfg.failed:
        flags.append("-DFST_WANT_FAILED")
    if cfg.pids:
        flags.append("-DFST_FILTER_PID")
    if cfg.comms:
        flags.append("-DFST_FILTER_COMM")
    if cfg.cgroup_filter:
        flags += ["-DFST_FILTER_CGROUP", "-DFST_CG_MIN_LEVEL=%d" % cfg.cgroup_min_level]
    if cfg.aggregate:
        flags += ["-DFST_AGGREGATE", "-DFST_AGG_MAX=%d" % cfg.agg_entries]
    return flags


class Probe:
    """A loaded, attached fstrace BPF program and its ring buffer."""

    def __init__(self, cfg: ProbeConfig, on_record):
        check_privileges()
        if cfg.backend not in BACKENDS:
            raise BpfLoadError("unknown backend %r (known: %s)" % (cfg.backend, ", ".join(BACKENDS)))
        self.cfg = cfg
        self._on_record = on_record
        self._bcc = import_bcc()
        tdir = tracefs()
        self.report = LoadReport(cfg.backend, headers=kernel_headers(),
                                 missing_syscalls=missing_syscalls(tdir))
        parts = ["common.bpf.c", cfg.backend + ".bpf.c"]
        for tp, loss in BACKEND_TRACEPOINTS[cfg.backend].items():
            if not tracepoint_exists(tdir, tp):
                if loss is None:
                    raise MissingKernelFeature(tp, "tracepoint not available on this kernel")
                self.report.skipped[tp] = loss
        if all(tracepoint_exists(tdir, tp) for tp in CGROUP_TRACEPOINTS):
            parts.append("cgroup.bpf.c")
        else:
            for tp in CGROUP_TRACEPOINTS:
                self.report.skipped[tp] = "cgroup names come from fanotify and /proc only"
        self.text = bpf_text(parts)
        bpf_dir = str(resources.files("bpftools.bpf"))
        self.cflags = cflags(cfg, os.getpid(), bpf_dir)
        try:
            self.bpf = self._bcc.BPF(text=self.text, cflags=self.cflags)
        except Exception as e:  # BCC raises bare Exception for compile, load and attach
            raise BpfLoadError("loading the %s BPF program failed: %s" % (cfg.backend, _bcc_reason(e))) from e
        self.report.tracepoints = [tp for tp in list(BACKEND_TRACEPOINTS[cfg.backend]) + list(CGROUP_TRACEPOINTS)
                                   if tp not in self.report.skipped]
        self._fill_filters()
        self.ring = RingBuffer(self.bpf["events"].map_fd, cfg.ring_pages * mmap.PAGESIZE)
        self._lost_seen = 0

    def _fill_filters(self) -> None:
        ct = ctypes
        if self.cfg.pids:
            table = self.bpf["pid_filter"]
            for pid in self.cfg.pids:
                table[ct.c_uint32(pid)] = ct.c_uint8(1)
        if self.cfg.comms:
            table = self.bpf["comm_filter"]
            for comm in self.cfg.comms:
                key = table.Key()
                raw = comm.encode()[: events.COMM_LEN - 1]
                ct.memmove(ct.addressof(key), raw, len(raw))
                table[key] = ct.c_uint8(1)

    def add_cgroups(self, ids) -> None:
        """Let tasks in these cgroups (and their descendants) through the cgroup filter."""
        table = self.bpf["cgroup_filter"]
        for cgid in ids:
            table[ctypes.c_uint64(cgid)] = ctypes.c_uint8(1)

    def seed_fd(self, tgid: int, fd: int, file_id: int, writable: bool, cloexec: bool) -> bool:
        """Tell the kernel about an fd opened before tracing began (never overwriting a newer entry)."""
        table = self.bpf["fds"]
        key = table.Key(tgid, fd)
        val = table.Leaf(file_id, 0, 0, (1 if writable else 0) | (2 if cloexec else 0))
        rc = self._bcc.libbcc.lib.bpf_update_elem(table.map_fd, ctypes.byref(key), ctypes.byref(val), 1)
        return rc == 0

    def poll(self, timeout_ms: int) -> None:
        """Wait up to timeout_ms for a wakeup, then deliver every record that is ready."""
        self.ring.wait(timeout_ms)
        self.ring.consume(self._on_record)

    def _percpu_sum(self, name: str) -> int:
        try:
            table = self.bpf[name]
        except KeyError:
            return 0
        return sum(int(v) for v in table[ctypes.c_int(0)])

    def lost(self) -> int:
        """Records lost since the last call (ring buffer full or syscalls not followed)."""
        total = self._percpu_sum("lost") + self._percpu_sum("dropped")
        delta, self._lost_seen = total - self._lost_seen, total
        return delta

    def close(self) -> None:
        self.ring.close()
        self.bpf.cleanup()


def _bcc_reason(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[-1] if text else type(e).__name__
