"""The backends: where each hooks the kernel, and what it cannot see.

One Backend object per way of hooking the kernel.  Each says which C files
make its program, which tracepoints it attaches (and what is lost without
each), which -D flags it adds, why it cannot run on this kernel, and what it
cannot see (the start record and the text header carry that list, the man
page's BACKENDS section explains it).  probe.Probe compiles, loads and
attaches whichever backend it is given; ``--backend auto`` walks BACKENDS in
order.  Nothing outside bpftools/kernel/ branches on a backend's name.
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field

from bpftools import abi
from bpftools.errors import MissingKernelFeature, NotPrivileged
from bpftools.kernel import btf, features

TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
CGROUP_TRACEPOINTS = ("cgroup/cgroup_mkdir", "cgroup/cgroup_rmdir")
HOOK = "fsnotify"
HOOK_PARAMS = ["mask", "data", "data_type", "dir", "file_name", "inode", "cookie"]    # Linux 5.9+
# Syscalls whose tracepoint is named after the kernel's function, not the syscall.
SYSCALL_EVENTS = {"sendfile": "sendfile64"}
# fsnotify() is not told how many bytes a read or write moved: the fsnotify backends hold those
# events until the syscall returns, at this tracepoint (bpf/fsnotify.bpf.c, FST_BYTES_EXIT).
BYTES_TRACEPOINT = "raw_syscalls/sys_exit"
BYTES_EVENTS = ("access", "modify")
# Latency: the fsnotify backends note when each thread enters a timed syscall and hold its events until it
# returns (bpf/fsnotify.bpf.c, FST_LATENCY); the tracepoint backend times every syscall it follows.
LATENCY_TRACEPOINTS = ("raw_syscalls/sys_enter", "raw_syscalls/sys_exit")
LATENCY = "-DFST_LATENCY"
FSNOTIFY_DATA_TYPES = {"FSNOTIFY_EVENT_PATH": "FST_EVENT_PATH", "FSNOTIFY_EVENT_DENTRY": "FST_EVENT_DENTRY"}


def tracefs() -> str:
    """The tracefs mount, mounting it at /sys/kernel/tracing if nothing is mounted."""
    for d in TRACEFS_DIRS:
        if os.path.isdir(os.path.join(d, "events")):
            return d
    for d in TRACEFS_DIRS:
        if os.path.ismount(d) and not os.access(d, os.R_OK | os.X_OK):
            raise NotPrivileged("tracefs at %s is mounted but not readable by this user: run fstrace as root" % d)
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
        name for name in abi.SYSCALL_NAMES.values()
        if not tracepoint_exists(tracefs_dir, "syscalls/sys_enter_" + SYSCALL_EVENTS.get(name, name))
    )


@dataclass
class Plan:
    """What a backend adds for one configuration on this kernel: flags, and what it leaves out."""

    flags: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)     # attach point or feature -> what is lost
    tracepoints: list[str] = field(default_factory=list)      # attached beyond Backend.tracepoints
    missing_syscalls: list[str] = field(default_factory=list)
    moves_bytes: bool = False
    times: bool = False         # opens, reads, writes and syncs are timed (FST_F_TIMED)


@dataclass(frozen=True)
class Backend:
    """One way of hooking the kernel.

    tracepoints maps each tracepoint the program attaches to what is lost
    without it (None: the backend cannot run without it).  tail_call names
    the program fst_progs[0] runs; arms_fsnotify: the kernel calls fsnotify() for a filesystem only
    while a mark is on it, so the probe arms them.
    """

    name: str
    sources: tuple[str, ...]
    blind_spots: tuple[str, ...]
    tracepoints: tuple[tuple[str, str | None], ...] = ()
    tail_call: str | None = None
    arms_fsnotify: bool = False

    def check(self, cfg, tdir: str | None) -> None:
        """Raise MissingKernelFeature saying why this backend cannot run here with cfg."""
        if cfg.mounts and not self.arms_fsnotify:
            raise MissingKernelFeature(self.name + " backend", "--mount needs an fsnotify backend (fentry or kprobe)")
        for tp, loss in self.tracepoints:
            if loss is None and tdir is not None and not tracepoint_exists(tdir, tp):
                raise MissingKernelFeature(tp, "tracepoint not available on this kernel")

    def plan(self, cfg, tdir: str | None) -> Plan:
        """The flags this backend adds for cfg; tdir None: as if every tracepoint were there."""
        plan = Plan()
        for tp, loss in self.tracepoints:
            if loss is not None and tdir is not None and not tracepoint_exists(tdir, tp):
                plan.skipped[tp] = loss
        return plan

    def optional(self, cfg) -> list[Optional]:
        """What the program is tried with first; a kernel that refuses them loses them, last first."""
        return []


@dataclass(frozen=True)
class SyscallBackend(Backend):
    """The tracepoint backend: every syscall passes raw_syscalls:sys_enter and sys_exit."""

    def plan(self, cfg, tdir):
        plan = super().plan(cfg, tdir)
        plan.moves_bytes = True
        plan.times = True           # sys_enter to sys_exit of every syscall it follows
        if tdir is not None:
            plan.missing_syscalls = missing_syscalls(tdir)
        return plan

    def optional(self, cfg):
        return [TASK_STORAGE] + ([KNOWN_FILES] if cfg.aggregate else [])


@dataclass(frozen=True)
class FsnotifyBackend(Backend):
    """fentry or kprobe on fsnotify(), through which the kernel passes every file event it computes."""

    fentry: bool = False

    def check(self, cfg, tdir):
        super().check(cfg, tdir)
        try:
            func_id, params = btf.Btf.load().func_params(HOOK)
        except btf.BtfError as e:
            raise MissingKernelFeature(self.name + " backend", "needs the kernel's BTF: %s" % e) from None
        if params != HOOK_PARAMS:
            raise MissingKernelFeature(self.name + " backend", "this kernel has %s(%s); fstrace hooks the Linux "
                                       "5.9+ %s(%s)" % (HOOK, ", ".join(params), HOOK, ", ".join(HOOK_PARAMS)))
        why = features.fentry_error(func_id) if self.fentry else features.kprobe_error(HOOK)
        if why:
            raise MissingKernelFeature(self.name + " backend", why)

    def plan(self, cfg, tdir):
        plan = super().plan(cfg, tdir)
        plan.flags = self.data_type_flags() + (["-DFST_FENTRY"] if self.fentry else [])
        if any(e in cfg.events for e in BYTES_EVENTS):
            if tdir is None or tracepoint_exists(tdir, BYTES_TRACEPOINT):
                plan.flags.append("-DFST_BYTES_EXIT")
                plan.tracepoints.append(BYTES_TRACEPOINT)
                plan.moves_bytes = True
            else:
                plan.skipped[BYTES_TRACEPOINT] = "reads and writes carry no byte counts"
        if tdir is None or all(tracepoint_exists(tdir, tp) for tp in LATENCY_TRACEPOINTS):
            plan.flags.append(LATENCY)
            plan.tracepoints = list(LATENCY_TRACEPOINTS)    # sys_exit: for the bytes too
            plan.times = True
        else:
            plan.skipped[LATENCY_TRACEPOINTS[0]] = "no operation is timed (latency_us is null)"
        return plan

    @staticmethod
    def data_type_flags() -> list[str]:
        """enum fsnotify_data_type from BTF (its values changed in 6.14)."""
        try:
            kernel_btf = btf.Btf.load()
            return ["-D%s=%d" % (macro, kernel_btf.enum_value(name)) for name, macro in FSNOTIFY_DATA_TYPES.items()]
        except btf.BtfError as e:
            raise MissingKernelFeature("fsnotify data types", "not described by the kernel's BTF (%s)" % e) from None


@dataclass(frozen=True)
class Optional:
    """A -D flag of a faster program some kernels refuse: without it, the feature is skipped, at this loss."""

    flag: str
    feature: str
    loss: str


# bpf/tracepoint.bpf.c: a followed syscall's arguments wait for its exit in task storage (5.11+)
TASK_STORAGE = Optional("-DFST_TASK_STORAGE", "per-task syscall state",
                        "syscalls in flight wait in a hash map, a slower one")
# ... and counting counts a file whose name is known by its key; without it every event's name is built
KNOWN_FILES = Optional("-DFST_KNOWN_FILES", "counting by file key", "every fd event's name is built")

_FSNOTIFY_BLIND = (
    "failed operations",
    "reads and writes that move no bytes",
    "writes through mmap, but for the close",
    "creates, renames and deletes with overridden credentials on a filesystem holding an overlay's upper layer",
)
FENTRY = FsnotifyBackend("fentry", ("fsnotify.bpf.c",), _FSNOTIFY_BLIND, fentry=True, arms_fsnotify=True)
KPROBE = FsnotifyBackend("kprobe", ("fsnotify.bpf.c",), _FSNOTIFY_BLIND, arms_fsnotify=True)
TRACEPOINT = SyscallBackend(
    "tracepoint", ("tracepoint.bpf.c",),
    ("closes by close_range, dup2 over an open fd and O_CLOEXEC at exec",
     "closes at exit beyond the first 32 files below fd 64",
     "closes while another process holds the file for a moment",
     "writes through mmap", "io_uring", "32-bit (ia32) processes"),
    tracepoints=(("raw_syscalls/sys_enter", None), ("raw_syscalls/sys_exit", None),
                 ("sched/sched_process_fork", None),
                 ("sched/sched_process_exit", "files a process leaves open get no close")),
    tail_call="fst_namer")
# Not a file backend: only the cgroup tracepoints (fstrace cgroups --watch).
CGROUPS_ONLY = Backend("cgroups", (), ())

BACKENDS = (FENTRY, KPROBE, TRACEPOINT)             # the order --backend auto tries them in
NAMES = tuple(b.name for b in BACKENDS)


def by_name(name: str) -> Backend:
    """The backend called name (one of NAMES, or CGROUPS_ONLY's)."""
    for b in BACKENDS + (CGROUPS_ONLY,):
        if b.name == name:
            return b
    raise KeyError(name)
