"""The BCC layer, and the only module that imports bcc.

Checks what the kernel and the machine offer, builds the BPF program from the
C files in bpf/ with options as -D flags, loads and attaches it, and hands
every ring-buffer record to a callback as bytes.  BCC's bare Exceptions become
the typed errors of bpftools/errors.py here.
"""
from __future__ import annotations

import ctypes
import itertools
import mmap
import os
import re
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources

from bpftools import abi
from bpftools.errors import (
    BpfLoadError,
    FstraceError,
    MissingDependency,
    MissingKernelFeature,
    NoBackend,
    NotPrivileged,
)
from bpftools.kernel import arming, btf
from bpftools.kernel.backends import BACKENDS, CGROUP_TRACEPOINTS, NAMES, Backend, by_name, tracefs, tracepoint_exists
from bpftools.kernel.counters import Counters
from bpftools.kernel.ringbuf import RingBuffer

MOUNT_PREFIX_MAX = 1024                             # struct fst_mount.prefix in bpf/fsnotify.bpf.c
CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39


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
    """Everything that shapes the BPF program; each becomes a -D flag.

    backend is one of BACKENDS or "auto"; mounts restricts the fsnotify
    backends to the filesystems of these paths.
    """

    backend: str = "tracepoint"
    events: tuple[str, ...] = abi.DEFAULT_EVENTS
    failed: bool = False
    pids: tuple[int, ...] = ()
    comms: tuple[str, ...] = ()
    cgroup_filter: bool = False
    cgroup_min_level: int = 0
    ring_pages: int = 2048           # 8 MiB
    wake_every: int = 64
    mounts: tuple[str, ...] = ()
    aggregate: bool = False          # count in the kernel (top, report) instead of sending events
    agg_entries: int = 65536         # entries of each counter map
    slower_than_ns: int | None = None    # streaming: only timed events at least this slow (FST_SLOWER_NS)


@dataclass
class LoadReport:
    """What was attached, and what was left out and why.

    reasons says, for every other backend, why it is not the one running;
    armed maps each armed mount point to "fid" or "fd" (fsnotify backends).
    """

    backend: str
    tracepoints: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    missing_syscalls: list[str] = field(default_factory=list)
    headers: KernelHeaders | None = None
    reasons: dict[str, str] = field(default_factory=dict)
    passed_over: tuple[str, ...] = ()       # the backends ahead of this one in BACKENDS
    armed: dict[str, str] = field(default_factory=dict)
    moves_bytes: bool = False               # access/modify records carry the bytes their syscall moved
    blind_spots: list[str] = field(default_factory=list)    # what the backend cannot see
    times: bool = False                     # opens, reads, writes and syncs are timed (FST_F_TIMED)


_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.M)


def bpf_text(parts) -> str:
    """The program's C text: each file with its own `#include "..."`s of bpf/ expanded in place.

    Every bpf/*.bpf.c includes what it uses, and compiles on its own, but BCC
    only rewrites its map syntax (events.ringbuf_output(), ...) in the text it
    is handed, not in included files: so the includes are expanded here.
    Include guards keep a header that two parts include to one copy.
    """
    src = resources.files("bpftools.bpf")

    def expand(name: str, depth: int = 0) -> str:
        if depth > 8:
            raise BpfLoadError("bpf/%s: includes nested too deep" % name)
        text = src.joinpath(name).read_text()
        return _INCLUDE.sub(lambda m: expand(m.group(1), depth + 1) if src.joinpath(m.group(1)).is_file()
                            else m.group(0), text)
    return "\n".join(expand(p) for p in parts)


def program_parts(backend: Backend, cgroup_tracepoints: bool = True) -> list[str]:
    """The C files one backend's program is made of, in order."""
    return list(backend.sources) + (["cgroup.bpf.c"] if cgroup_tracepoints or not backend.sources else [])


def cflags(cfg: ProbeConfig, self_tgid: int, bpf_dir: str) -> list[str]:
    flags = [
        "-I" + bpf_dir,
        "-DFST_SELF_TGID=%d" % self_tgid,
        "-DFST_EVENT_MASK=%du" % abi.event_mask(cfg.events),
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
    elif cfg.slower_than_ns:
        flags.append("-DFST_SLOWER_NS=%dULL" % cfg.slower_than_ns)
    return flags


def layout_cflags() -> list[str]:
    """The struct offsets every backend reads (bpf/fst_kernel.h), from the running kernel's BTF."""
    try:
        return btf.layout_cflags(btf.Btf.load())
    except btf.BtfError as e:
        raise MissingKernelFeature("BTF", "fstrace reads kernel structs with offsets from the kernel's BTF "
                                   "(CONFIG_DEBUG_INFO_BTF): %s" % e) from None


def program(cfg: ProbeConfig, self_tgid: int, bpf_dir: str) -> tuple[list[str], str]:
    """The cflags and C text of cfg.backend's program, as Probe compiles it (with the kernel's BTF)."""
    backend = by_name(cfg.backend)
    flags = cflags(cfg, self_tgid, bpf_dir)
    if backend.sources:
        flags += layout_cflags()
    flags += backend.plan(cfg, None).flags
    return flags, bpf_text(program_parts(backend))


@contextmanager
def _stderr_captured():
    """BCC and clang write diagnostics (header warnings, verifier logs) to fd 2: keep them."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as buf:
        saved = os.dup(2)
        os.dup2(buf.fileno(), 2)
        lines: list[str] = []
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            buf.seek(0)
            lines.extend(buf.read().decode("utf-8", "replace").splitlines())
            if os.environ.get("FSTRACE_DEBUG") == "1":
                sys.stderr.write("\n".join(lines) + "\n")


class Probe:
    """A loaded, attached fstrace BPF program and its ring buffer.

    With backend "auto" the backends are tried in BACKENDS order; the report
    says which one runs and why each other one does not.  A backend asked for
    by name that cannot run raises the kernel's reason.
    """

    def __init__(self, cfg: ProbeConfig, on_record):
        check_privileges()
        try:
            asked = None if cfg.backend == "auto" else by_name(cfg.backend)
        except KeyError:
            raise BpfLoadError("unknown backend %r (known: auto, %s)" % (cfg.backend, ", ".join(NAMES))) from None
        self.cfg = cfg
        self._on_record = on_record
        self._bcc = import_bcc()
        self._tdir = tracefs()
        self.armer: arming.Armer | None = None
        headers = kernel_headers()
        reasons: dict[str, str] = {}
        failed_to_load = False
        for backend in (asked,) if asked else BACKENDS:
            try:
                self._load(backend, headers)
                break
            except FstraceError as e:
                if asked:
                    raise
                reasons[backend.name] = e.hint if isinstance(e, MissingKernelFeature) else str(e)
                failed_to_load |= isinstance(e, BpfLoadError)
        else:
            why = "no backend can run here: " + "; ".join("%s: %s" % kv for kv in reasons.items())
            raise BpfLoadError(why) if failed_to_load else NoBackend(why)
        chosen = self.report.backend
        for other in NAMES:
            if other != chosen and other not in reasons:
                reasons[other] = ("not requested (--backend %s)" % chosen if asked
                                  else "not needed: %s runs" % chosen)
        self.report.reasons = {b: reasons[b] for b in NAMES if b != chosen}
        self.report.passed_over = NAMES[:NAMES.index(chosen)] if chosen in NAMES else ()
        self._fill_filters()
        self.ring = RingBuffer(self.bpf["events"].map_fd, cfg.ring_pages * mmap.PAGESIZE)
        self._lost_seen = 0

    def _load(self, backend: Backend, headers: KernelHeaders) -> None:
        """Compile, load and attach one backend (and arm fsnotify for it), or raise why not."""
        cfg, tdir = self.cfg, self._tdir
        backend.check(cfg, tdir)
        plan = backend.plan(cfg, tdir)
        report = LoadReport(backend.name, headers=headers, moves_bytes=plan.moves_bytes, skipped=plan.skipped,
                            missing_syscalls=plan.missing_syscalls, blind_spots=list(backend.blind_spots),
                            times=plan.times)
        flags = cflags(cfg, os.getpid(), str(resources.files("bpftools.bpf")))
        if backend.sources:
            flags += layout_cflags()
        flags += plan.flags
        with_cgroups = all(tracepoint_exists(tdir, tp) for tp in CGROUP_TRACEPOINTS)
        if not with_cgroups:
            for tp in CGROUP_TRACEPOINTS:
                report.skipped[tp] = "cgroup names come from fanotify and /proc only"
        text = bpf_text(program_parts(backend, with_cgroups))
        bpf, kept = self._compile_best(backend, text, flags, backend.optional(cfg), report)
        flags += [o.flag for o in kept]
        attached = [tp for tp, _ in backend.tracepoints] + list(CGROUP_TRACEPOINTS) + plan.tracepoints
        report.tracepoints = [tp for tp in attached if tp not in report.skipped]
        self.bpf, self.report, self.text, self.cflags = bpf, report, text, flags
        if backend.arms_fsnotify:
            armer = arming.Armer(cfg.events, self._set_mount, tuple(os.fsencode(m) for m in cfg.mounts))
            try:
                armer.start()
            except FstraceError:
                armer.close()
                bpf.cleanup()
                raise
            self.armer = armer
            for point, why in armer.skipped.items():
                report.skipped["fsnotify mark on " + point] = why

    def _compile_best(self, backend: Backend, text: str, flags: list[str], optional: list, report: LoadReport):
        """The program with as many of the optional flags as the kernel takes (the earlier ones
        preferred); each left out is in report.skipped with the kernel's reason."""
        refused: dict[tuple, BpfLoadError] = {}
        for size in range(len(optional), -1, -1):
            for kept in itertools.combinations(optional, size):
                try:
                    bpf = self._compile(backend, text, flags + [o.flag for o in kept])
                except BpfLoadError as e:
                    if not optional:
                        raise
                    refused[kept] = e
                    continue
                for o in optional:
                    if o not in kept:
                        why = refused.get(tuple(x for x in optional if x in kept or x is o))
                        report.skipped[o.feature] = "%s: %s" % (o.loss, why or next(iter(refused.values())))
                return bpf, kept
        raise next(reversed(refused.values()))

    def _compile(self, backend: Backend, text: str, flags: list[str]):
        """The program compiled, loaded and attached, with its tail call set (BpfLoadError: why not)."""
        try:
            with _stderr_captured() as diagnostics:
                bpf = _compile(self._bcc, text, flags)
        except Exception as e:  # BCC raises bare Exception for compile, load and attach
            raise BpfLoadError("loading the %s BPF program failed: %s"
                               % (backend.name, _bcc_reason(e, diagnostics))) from e
        if backend.tail_call:
            _set_tail_call(bpf, self._bcc, backend)
        return bpf

    def _set_mount(self, sb: arming.Superblock | None, dev: int) -> None:
        """Tell the BPF program where superblock dev is mounted and whether it is traced."""
        table = self.bpf["mounts"]
        key = table.Key(dev)
        point = b"" if sb is None or sb.point == b"/" else sb.point
        if sb is None or len(point) >= MOUNT_PREFIX_MAX:
            table.pop(key, None)      # events there are dropped (too long a mount point: never named)
            return
        leaf = table.Leaf()
        leaf.traced = int(sb.traced)
        leaf.upper = int(sb.upper)
        leaf.len = len(point)
        leaf.prefix = point
        table[key] = leaf
        if sb.armed:
            self.report.armed[os.fsdecode(sb.point)] = sb.armed

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
                raw = comm.encode()[: abi.COMM_LEN - 1]
                ct.memmove(ct.addressof(key), raw, len(raw))
                table[key] = ct.c_uint8(1)

    def add_cgroups(self, ids) -> None:
        """Let tasks in these cgroups (and their descendants) through the cgroup filter."""
        table = self.bpf["cgroup_filter"]
        for cgid in ids:
            table[ctypes.c_uint64(cgid)] = ctypes.c_uint8(1)

    def counters(self) -> Counters:
        """The counter maps of an FST_AGGREGATE program."""
        return Counters.from_probe(self)

    def poll(self, timeout_ms: int) -> None:
        """Wait up to timeout_ms for a wakeup, then deliver every record that is ready now."""
        self.ring.wait(timeout_ms)
        self.ring.consume(self._on_record)
        if self.armer:
            self.armer.poll()

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
        # Each tracepoint detach waits for an RCU grace period (~60 ms here):
        # wait for them side by side rather than one after another.
        tracepoints = list(self.bpf.tracepoint_fds)
        if tracepoints:
            with ThreadPoolExecutor(len(tracepoints)) as pool:
                list(pool.map(self.bpf.detach_tracepoint, tracepoints))
        self.bpf.cleanup()
        if self.armer:
            self.armer.close()


def _set_tail_call(bpf, bcc, backend: Backend) -> None:
    """fst_progs[0] = the backend's tail_call program (bpf/tracepoint.bpf.c: fst_namer, which names
    what sys_enter and sys_exit hand it).  If it cannot be loaded, bpf is cleaned up."""
    try:
        with _stderr_captured() as diagnostics:
            fn = bpf.load_func(backend.tail_call, bcc.BPF.RAW_TRACEPOINT)
    except Exception as e:  # BCC raises bare Exception
        bpf.cleanup()
        raise BpfLoadError("loading the %s backend's %s failed: %s"
                           % (backend.name, backend.tail_call, _bcc_reason(e, diagnostics))) from e
    bpf["fst_progs"][ctypes.c_int(0)] = ctypes.c_int(fn.fd)


def _compile(bcc, text: str, flags: list[str]):
    """bcc.BPF(text, flags), compiled, loaded and attached; if that fails part way, what it had
    attached is detached before the exception goes on (a BPF object that fails in __init__ is
    never returned, and its attached programs would run until fstrace exits)."""
    bpf = bcc.BPF.__new__(bcc.BPF)
    try:
        bpf.__init__(text=text, cflags=flags)
    except Exception:
        try:
            bpf.cleanup()
        except Exception:  # a half-built object may lack what cleanup() reads
            pass
        raise
    return bpf


def _bcc_reason(e: Exception, diagnostics: list[str]) -> str:
    """The most telling line: clang's first error, the verifier's last word, or BCC's message."""
    errors = [line for line in diagnostics if "error:" in line]
    if errors:
        return errors[0].strip()
    text = str(e).strip().splitlines()
    reason = text[-1] if text else type(e).__name__
    # the verifier's complaint is the last line before its statistics
    log = [line.strip() for line in diagnostics
           if line.strip() and not line.startswith(("processed ", "verification time", "stack depth"))]
    return "%s: %s" % (reason, log[-1]) if log else reason
