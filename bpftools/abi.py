"""The Python mirror of bpf/fstrace.h: record layout, codes and decoding.

This is the only place that knows the byte layout of a ring-buffer record;
tests/privileged/test_abi.py compares it with the struct BCC compiles.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from importlib import resources
from typing import NamedTuple

PATH_MAX = 4096
COMM_LEN = 16

REC_FILE = 1
REC_CGROUP = 2
REC_TASK = 3
REC_NAME = 4      # FST_AGGREGATE: the name behind a file key (see bpftools/kernel/counters.py)

# The event names of the JSON record contract, indexed by FST_EV_* code.
EVENT_NAMES = (
    "open",
    "exec",
    "access",
    "modify",
    "attrib",
    "close_write",
    "close_nowrite",
    "create",
    "delete",
    "rename",
    "sync",
)
EVENT_CODES = {name: code for code, name in enumerate(EVENT_NAMES)}

# The event types whose operations are timed (FST_LAT_SLOT of bpf/fstrace.h: their slots, in this order).
TIMED_EVENTS = ("open", "create", "access", "modify", "sync")
LAT_SLOTS = len(TIMED_EVENTS)
NO_TIME = (0,) * LAT_SLOTS     # an entry with nothing timed
HIST_BUCKETS = 40       # FST_HIST_BUCKETS: bucket b holds times in [2**b, 2**(b+1)) ns; the last, all slower

# High-rate events a user has to ask for (every read and write is one).
OPT_IN_EVENTS = frozenset({"access", "modify"})
DEFAULT_EVENTS = tuple(n for n in EVENT_NAMES if n not in OPT_IN_EVENTS)

CG_ACTIONS = ("mkdir", "rmdir")

TASK_FORK = 0

F_DIR = 0x1
F_NO_BYTES = 0x2        # access/modify: the bytes its syscall moved are not known (fsnotify backends)
F_TIMED = 0x4           # lat_ns is the time its syscall took
AT_FDCWD = -100      # fst_event.dirfd: name1 is absolute (FST_AT_FDCWD)
NO_DIRFD = -1        # fst_event.dirfd: name1 is a relative tail (FST_NO_DIRFD)

# struct fst_event up to data[]: see bpf/fstrace.h for the meaning of each field.
HEADER_FIELDS = (
    ("ts_ns", "Q"),
    ("cgroup_id", "Q"),
    ("file_id", "Q"),
    ("base_id", "Q"),
    ("base_id2", "Q"),
    ("ret", "q"),
    ("lat_ns", "Q"),
    ("type", "I"),
    ("op", "I"),
    ("pid", "I"),
    ("tid", "I"),
    ("uid", "I"),
    ("syscall", "I"),
    ("flags", "I"),
    ("oflags", "I"),
    ("fd", "i"),
    ("dirfd", "i"),
    ("dirfd2", "i"),
    ("len1", "H"),
    ("len2", "H"),
    ("comm", "%ds" % COMM_LEN),
)
HEADER = struct.Struct("=" + "".join(code for _, code in HEADER_FIELDS))
HEADER_SIZE = HEADER.size
RECORD_MAX = HEADER_SIZE + 2 * PATH_MAX



def _syscall_table() -> dict[int, str]:
    """x86_64 number -> name of the syscalls the tracepoint backend follows: bpf/fst_syscalls.h, the one table."""
    text = resources.files("bpftools.bpf").joinpath("fst_syscalls.h").read_text()
    return {int(nr): name for nr, name in re.findall(r"^FST_SYSCALL\((\d+),\s*(\w+)\)", text, re.M)}


SYSCALL_NAMES = _syscall_table()


def _moves_bytes() -> frozenset[int]:
    """The syscalls whose return value is the bytes they moved: FST_MOVES_BYTES of bpf/fstrace.h, the one list.

    Their access and modify events carry those bytes; sendfile, splice and copy_file_range read one file
    and write another: access on the source, modify on the destination, each with the same bytes.
    """
    text = resources.files("bpftools.bpf").joinpath("fstrace.h").read_text()
    block = text[text.index("#define FST_MOVES_BYTES(nr)"):]
    block = block[:block.index("\n\n")]
    return frozenset(int(nr) for nr in re.findall(r"\(nr\) == (\d+)", block))


def _macro_numbers(macro: str) -> frozenset[int]:
    """The syscall numbers a macro of bpf/fstrace.h compares nr with: its own lines (those its backslashes join)."""
    text = resources.files("bpftools.bpf").joinpath("fstrace.h").read_text()
    lines = text[text.index("#define %s(nr)" % macro):].split("\n")
    own = []
    for line in lines:
        own.append(line)
        if not line.rstrip().endswith("\\"):
            break
    return frozenset(int(nr) for nr in re.findall(r"\(nr\) == (\d+)", "\n".join(own)))


_BYTES_NRS = _moves_bytes()
# The syscalls whose time is measured: FST_TIMED of bpf/fstrace.h (FST_OPENS, its own numbers, FST_MOVES_BYTES).
TIMED_SYSCALLS = frozenset(SYSCALL_NAMES[nr] for nr in _macro_numbers("FST_OPENS") | _macro_numbers("FST_TIMED")
                           | _BYTES_NRS)
BYTES_SYSCALLS = frozenset(SYSCALL_NAMES[nr] for nr in _BYTES_NRS)
_BYTES_OPS = frozenset({2, 3})      # access, modify


def moved_bytes(op: int, syscall: int, ret: int, flags: int = 0) -> int | None:
    """The bytes an event's syscall moved (its return value), or None when it moved none or is not known.

    A failed call moved none (None); a read at the end of a file moved 0.
    """
    if op in _BYTES_OPS and syscall in _BYTES_NRS and ret >= 0 and not flags & F_NO_BYTES:
        return ret
    return None


@dataclass(slots=True)
class Record:
    """One decoded ring-buffer record; names are raw bytes as the kernel gave them."""

    ts_ns: int
    cgroup_id: int
    file_id: int
    base_id: int
    base_id2: int
    ret: int
    lat_ns: int             # the syscall's time in ns when flags & F_TIMED, else 0
    type: int
    op: int
    pid: int
    tid: int
    uid: int
    syscall: int
    flags: int
    oflags: int
    fd: int
    dirfd: int
    dirfd2: int
    comm: bytes
    name1: bytes | None
    name2: bytes | None

    @property
    def event(self) -> str:
        return EVENT_NAMES[self.op]

    @property
    def latency_ns(self) -> int | None:
        return self.lat_ns if self.flags & F_TIMED else None

    @property
    def syscall_name(self) -> str:
        return SYSCALL_NAMES.get(self.syscall, str(self.syscall))


class DecodeError(ValueError):
    """A record shorter than its header says."""


def _name(data, start: int, length: int) -> bytes:
    end = start + length
    # length counts the NUL the kernel copied; a name cut at PATH_MAX has none
    return bytes(data[start:end - 1] if data[end - 1] == 0 else data[start:end])


def decode(data) -> Record:
    """Decode one record (bytes or a memoryview) as sent by fst_send() in bpf/common.bpf.c."""
    size = len(data)
    if size < HEADER_SIZE:
        raise DecodeError("record of %d bytes is shorter than the %d-byte header" % (size, HEADER_SIZE))
    (ts_ns, cgroup_id, file_id, base_id, base_id2, ret, lat_ns, rtype, op, pid, tid, uid, syscall,
     flags, oflags, fd, dirfd, dirfd2, len1, len2, comm) = HEADER.unpack_from(data)
    if rtype == REC_FILE and op >= len(EVENT_NAMES):
        raise DecodeError("unknown event code %d" % op)
    if HEADER_SIZE + len1 + len2 > size:
        raise DecodeError("record truncated: names end at %d of %d bytes" % (HEADER_SIZE + len1 + len2, size))
    return Record(
        ts_ns, cgroup_id, file_id, base_id, base_id2, ret, lat_ns, rtype, op, pid, tid, uid, syscall,
        flags, oflags, fd, dirfd, dirfd2, comm.split(b"\0", 1)[0],
        _name(data, HEADER_SIZE, len1) if len1 else None,
        _name(data, HEADER_SIZE + len1, len2) if len2 else None,
    )


def encode(rec: Record) -> bytes:
    """The bytes the kernel would send for rec (for tests and replay)."""
    names = b""
    len1 = len2 = 0
    if rec.name1 is not None:
        names += rec.name1 + b"\0"
        len1 = len(rec.name1) + 1
    if rec.name2 is not None:
        names += rec.name2 + b"\0"
        len2 = len(rec.name2) + 1
    return HEADER.pack(
        rec.ts_ns, rec.cgroup_id, rec.file_id, rec.base_id, rec.base_id2, rec.ret, rec.lat_ns, rec.type,
        rec.op, rec.pid, rec.tid, rec.uid, rec.syscall, rec.flags, rec.oflags, rec.fd,
        rec.dirfd, rec.dirfd2, len1, len2, rec.comm,
    ) + names


def parse_events(spec: str) -> tuple[str, ...]:
    """Parse an --event list ("create,delete", "all", "default,modify")."""
    out: list[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if item == "all":
            names = EVENT_NAMES
        elif item == "default":
            names = DEFAULT_EVENTS
        elif item in EVENT_CODES:
            names = (item,)
        else:
            raise ValueError(
                "unknown event %r; known: %s, default, all" % (item, ", ".join(EVENT_NAMES))
            )
        out.extend(n for n in names if n not in out)
    return tuple(out)


def event_mask(names) -> int:
    mask = 0
    for n in names:
        mask |= 1 << EVENT_CODES[n]
    return mask


# --- the counter maps of FST_AGGREGATE (struct fst_agg_key, struct fst_agg_val) ---------------
KEY_FD = 1 << 63                # file key of a file known only by its file id (FST_KEY_FD)
AGG_KEY = struct.Struct("=QQII")    # cgroup_id, file, pid, err
# n[FST_EV_COUNT], read_bytes, write_bytes, lat_ns[FST_LAT_SLOTS], timed[FST_LAT_SLOTS], comm
AGG_VALUE = struct.Struct("=%dQQQ%dQ%dQ%ds" % (len(EVENT_NAMES), LAT_SLOTS, LAT_SLOTS, COMM_LEN))
HIST_KEY = struct.Struct("=QII")        # struct fst_hist_key: cgroup_id, op, pad
HIST_VALUE = struct.Struct("=%dQQQ" % HIST_BUCKETS)   # struct fst_hist_val: bucket[FST_HIST_BUCKETS], sum_ns, max_ns


class Entry(NamedTuple):
    """One counter map entry: what one process did to one file in one cgroup (a tuple: 10k per tick)."""

    cgroup_id: int
    file: int               # file key; NO_FILE when none is known
    pid: int
    err: int                # errno of failed operations; 0 when they succeeded
    comm: bytes
    counts: tuple[int, ...]  # per EVENT_NAMES
    read_bytes: int = 0      # bytes its access events moved (BYTES_SYSCALLS)
    write_bytes: int = 0     # bytes its modify events moved
    lat_ns: tuple[int, ...] = NO_TIME    # summed time of its timed operations, per TIMED_EVENTS
    timed: tuple[int, ...] = NO_TIME     # how many of its operations were timed, per TIMED_EVENTS


class Hist(NamedTuple):
    """One latency histogram: the timed operations of one event type in one cgroup, per log2 bucket of ns."""

    cgroup_id: int
    op: int                 # EVENT_NAMES code
    buckets: tuple[int, ...]    # HIST_BUCKETS counts
    sum_ns: int                 # their summed time
    max_ns: int


def bucket_of(ns: int) -> int:
    """The histogram bucket of a time in ns (FST_HIST_BUCKETS: floor(log2(ns)), the last holds all slower)."""
    return min(max(ns, 1).bit_length() - 1, HIST_BUCKETS - 1)
