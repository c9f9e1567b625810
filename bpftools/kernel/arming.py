"""Arming fsnotify for the fentry/kprobe backends, and the mount table they name paths with.

The kernel calls fsnotify() on a superblock only while some fsnotify mark
exists on it, and (6.9+) only for event types some mark covers.  The Armer
places one fanotify FAN_MARK_FILESYSTEM mark per traced superblock whose
*ignore* mask covers the traced events: the ignore mask is ORed into the
superblock's mask (fsnotify_calc_mask()), so every wanted event reaches
fsnotify(), while a mark that wants nothing never queues an event to
fstrace (measured on 6.1 and 6.12: docs/backends.md, ARMING).

Directory-entry events and attrib need a group that reports file ids
(FAN_REPORT_FID); on filesystems that cannot encode file handles (9p, some
FUSE) a plain group arms the fd events only, and the report says so.

The Armer also tells the BPF program (through the on_mount callback) where
each superblock is mounted, so the kernel can build absolute paths, and
which superblocks are traced.  New mounts are armed as they appear: the
mount namespace's mountinfo file becomes readable with POLLPRI when the
mount table changes (proc(5)).
"""
from __future__ import annotations

import os
import select
from dataclasses import dataclass, field

from bpftools.errors import FstraceError
from bpftools.kernel import fanotify as fan
from bpftools.kernel import mountinfo
from bpftools.kernel.mountinfo import MOUNTINFO, Mount

# fanotify(7) event bits, and mark flags the binding does not name.
FAN_ACCESS = 0x1
FAN_MODIFY = 0x2
FAN_ATTRIB = 0x4
FAN_CLOSE_WRITE = 0x8
FAN_CLOSE_NOWRITE = 0x10
FAN_OPEN = 0x20
FAN_MOVED_FROM = 0x40
FAN_MOVED_TO = 0x80
FAN_OPEN_EXEC = 0x1000
FAN_MARK_IGNORED_MASK = 0x20
FAN_MARK_IGNORED_SURV_MODIFY = 0x40

EVENT_BITS = {
    "open": FAN_OPEN,
    "exec": FAN_OPEN_EXEC,
    "access": FAN_ACCESS,
    "modify": FAN_MODIFY,
    "attrib": FAN_ATTRIB,
    "close_write": FAN_CLOSE_WRITE,
    "close_nowrite": FAN_CLOSE_NOWRITE,
    "create": fan.FAN_CREATE,
    "delete": fan.FAN_DELETE,
    "rename": FAN_MOVED_FROM | FAN_MOVED_TO,
    "sync": 0,              # not an fsnotify event: the fsnotify backends see fsync at raw_syscalls
}
# What a group without file ids may put in a mark (FANOTIFY_FD_EVENTS).
FD_EVENT_BITS = FAN_OPEN | FAN_OPEN_EXEC | FAN_ACCESS | FAN_MODIFY | FAN_CLOSE_WRITE | FAN_CLOSE_NOWRITE

# Filesystems that hold no user files: never armed, never traced.
PSEUDO_FILESYSTEMS = frozenset({
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts",
    "efivarfs", "fusectl", "hugetlbfs", "mqueue", "nsfs", "proc", "pstore", "rpc_pipefs",
    "securityfs", "selinuxfs", "sysfs", "tracefs",
})

GROUP_FLAGS = fan.FAN_CLASS_NOTIF | fan.FAN_NONBLOCK | fan.FAN_CLOEXEC
MARK_FLAGS = (fan.FAN_MARK_ADD | fan.FAN_MARK_FILESYSTEM
              | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY)


class ArmingError(FstraceError):
    """fsnotify could not be armed: the fsnotify backends cannot see events."""

    exit_code = 69


def fanotify_mask(events) -> int:
    mask = 0
    for name in events:
        mask |= EVENT_BITS[name]
    return mask


def mount_of(path: bytes, mounts: list[Mount]) -> Mount | None:
    """The mount path is on: the last-mounted entry with the longest matching mount point."""
    best = None
    for m in mounts:
        point = m.point.rstrip(b"/") + b"/"
        if (path.rstrip(b"/") + b"/").startswith(point):
            if best is None or len(m.point) >= len(best.point):
                best = m
    return best


@dataclass
class Superblock:
    """What the BPF program knows about one superblock."""

    dev: int
    point: bytes        # mount point of its root, b"/" for the root filesystem
    fstype: str
    traced: bool
    armed: str = ""     # "" (not armed), "fid" or "fd" (fd events only)
    upper: bool = False  # holds an overlay's upper layer: overlayfs's own changes there are not reported


@dataclass
class Armer:
    """Keeps a FAN_MARK_FILESYSTEM ignore mark on every traced superblock."""

    events: tuple[str, ...]
    on_mount: object                 # callback(Superblock | None, dev): None = forget dev
    only: tuple[bytes, ...] = ()     # trace only the filesystems of these paths
    mountinfo: str = MOUNTINFO
    superblocks: dict[int, Superblock] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)    # mount point -> why not armed

    def __post_init__(self):
        self.mask = fanotify_mask(self.events)
        self._groups: dict[str, int] = {}
        self._watch = open(self.mountinfo, "rb")
        self._poller = select.poll()
        self._poller.register(self._watch, select.POLLPRI | select.POLLERR)
        self._poller.poll(0)            # consume the "changed" state every new reader starts with

    def start(self) -> None:
        """Arm what is mounted now; ArmingError if nothing traced could be armed."""
        for path in self.only:
            try:
                os.stat(path)
            except OSError as e:
                raise ArmingError("--mount %s: %s" % (os.fsdecode(path), e.strerror)) from None
        self._sync(self._read())
        if self.mask and not any(sb.armed for sb in self.superblocks.values() if sb.traced):
            why = "; ".join("%s: %s" % kv for kv in self.skipped.items()) or "no filesystem to trace"
            raise ArmingError("could not arm fsnotify on any filesystem (%s)" % why)

    def poll(self) -> bool:
        """Arm new mounts and forget gone ones if the mount table changed; True if it did."""
        if not self._poller.poll(0):
            return False
        self._sync(self._read())
        return True

    @property
    def group_fds(self) -> dict[str, int]:
        """The fanotify groups holding the marks: "fid" and/or "fd" -> file descriptor."""
        return dict(self._groups)

    def close(self) -> None:
        for fd in self._groups.values():
            os.close(fd)
        self._groups.clear()
        self._watch.close()

    # --- internals -----------------------------------------------------------------------
    def _read(self) -> list[Mount]:
        return mountinfo.read(self.mountinfo)

    def _traced_devs(self, mounts: list[Mount]) -> set[int]:
        if self.only:
            found = (mount_of(os.path.realpath(p), mounts) for p in self.only)
            return {m.dev for m in found if m is not None}
        return {m.dev for m in mounts if m.fstype not in PSEUDO_FILESYSTEMS}

    @staticmethod
    def _upper_devs(mounts: list[Mount]) -> set[int]:
        """The superblocks holding an overlay's upper and work directories (as far as we can see them)."""
        devs = set()
        for m in mounts:
            for path in mountinfo.overlay_upper_dirs(m):
                try:
                    st = os.stat(path)
                except OSError:
                    continue        # in a mount namespace we do not share
                devs.add(mountinfo.kernel_dev(os.major(st.st_dev), os.minor(st.st_dev)))
        return devs

    def _sync(self, mounts: list[Mount]) -> None:
        traced = self._traced_devs(mounts)
        uppers = self._upper_devs(mounts)
        covered = {m.point: m for m in mounts}          # the last mount on a point is the visible one
        seen: set[int] = set()
        for m in mounts:
            if m.root != b"/" or m.dev in seen:
                continue                                 # bind mounts of subtrees; later mounts of one sb
            seen.add(m.dev)
            known = self.superblocks.get(m.dev)
            upper = m.dev in uppers
            if known is not None and known.point == m.point:
                if known.upper != upper:
                    known.upper = upper
                    self.on_mount(known, m.dev)
                continue
            sb = Superblock(m.dev, m.point, m.fstype, m.dev in traced, upper=upper)
            if sb.traced and self.mask:
                if covered[m.point] is not m:
                    self.skipped[os.fsdecode(m.point)] = "covered by a later mount"
                    sb.traced = False
                else:
                    sb.armed = self._arm(m)
                    sb.traced = bool(sb.armed)
            self.superblocks[m.dev] = sb
            self.on_mount(sb, m.dev)
        for dev in set(self.superblocks) - seen:
            del self.superblocks[dev]
            self.on_mount(None, dev)

    def _group(self, kind: str) -> int:
        if kind not in self._groups:
            flags = GROUP_FLAGS | (fan.FAN_REPORT_FID if kind == "fid" else 0)
            try:
                self._groups[kind] = fan.fanotify_init(flags)
            except fan.FanotifyError as e:
                raise ArmingError("arming fsnotify: %s" % e) from None
        return self._groups[kind]

    def _arm(self, m: Mount) -> str:
        """Mark m's superblock; "fid", "fd", or "" (reason in skipped)."""
        where = os.fsdecode(m.point)
        # Without file handles only fd events can be marked; any mark still lets create,
        # delete and rename through (fsnotify_name() checks for a watcher, not a mask).
        attempts = [("fid", self.mask), ("fd", self.mask & FD_EVENT_BITS or FAN_CLOSE_WRITE)]
        for kind, mask in attempts:
            try:
                fan.fanotify_mark(self._group(kind), MARK_FLAGS, mask, m.point)
                if kind == "fd" and self.mask & FAN_ATTRIB:
                    self.skipped[where] = ("armed without file handles (%s): attrib events reach "
                                           "fsnotify() only before Linux 6.9" % self.skipped.pop(where, "unsupported"))
                return kind
            except fan.FanotifyLimitError as e:
                raise ArmingError("arming fsnotify on %s: %s (or trace fewer filesystems with --mount)"
                                  % (where, e)) from None
            except fan.FanotifyPermissionError as e:
                raise ArmingError("arming fsnotify: %s" % e) from None
            except fan.FanotifyUnsupported as e:
                self.skipped[where] = str(e)
            except OSError as e:       # the mount point went away or cannot be reached
                self.skipped[where] = "%s: %s" % (where, e.strerror)
                return ""
        return ""
