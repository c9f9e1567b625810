"""The compiled stream path: ring-buffer records to JSON Lines or text, one buffer per poll.

``fastpath.c`` (built with cffi in API mode by ``pip install``: build.py,
setup.py's ``cffi_modules``) walks the ring buffer's memory, decodes each
file record (bpf/fstrace.h), normalises and escapes its names and writes
its line, for every common record, without a Python call per record.  What
needs state it does not have goes to Python, which answers and lets it go
on: a record that is not a file event (cgroup births and deaths, forks), a
cgroup or a process it has not met.  Loss stays Python's (the kernel's
counters, read once per poll).

A ``Formatter`` is what a sink (views/jsonl.py, views/text.py) hands the
session (session/stream.py); ``drain()`` consumes a ring (kernel/ringbuf.py)
into it.  JSON keys follow the field table: ``Formatter.json()`` takes
(key, source) pairs, a source says where a key's value comes from, and a
numeric field of the record header is ``number("field")``: no C to write.
"""
from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

from bpftools import abi
from bpftools.errors import MissingDependency

try:
    from bpftools.fastpath._fastpath import ffi, lib
except ImportError as _e:          # a checkout nobody built: pip install -e . (make install) builds it
    ffi = lib = None
    _WHY = str(_e)
else:
    _WHY = None


def require() -> None:
    """Raise a one-line error when the compiled formatter is missing or was built for another record layout."""
    if lib is None:
        raise MissingDependency("fstrace's compiled stream formatter is not built (%s): "
                                "run `pip install -e .` or `make install` in the source tree" % _WHY)
    if lib.fp_header_size() != abi.HEADER_SIZE or any(
            lib.fp_header_offset(name.encode()) not in (-1, offset) for name, offset in HEADER_OFFSETS.items()):
        raise MissingDependency("fstrace's compiled stream formatter was built for another record layout "
                                "than bpftools/abi.py's: rebuild it with `pip install -e .` or `make install`")


def _offsets() -> dict[str, int]:
    out, pos = {}, 0
    for name, code in abi.HEADER_FIELDS:
        out[name] = pos
        pos += struct.calcsize("=" + code)
    return out


HEADER_OFFSETS = _offsets()
_SIZES = {name: (struct.calcsize("=" + code), code.islower()) for name, code in abi.HEADER_FIELDS}


# --- where each JSON key's value comes from --------------------------------------------
@dataclass(frozen=True)
class Source:
    """What one key of an event record holds (an op of fastpath.c)."""

    op: str                     # LITERAL TS EVENT DIR NAME1 NAME2 NUMBER PPID COMM CGROUP ERROR SYSCALL BYTES,
    arg: str = ""               # or IN_CGROUP: written by the cgroup's fragment
    field: str = ""             # NUMBER: the header field (abi.HEADER_FIELDS)
    when_flags: int = 0         # NUMBER: null unless the record's flags have all of these
    divisor: int = 1            # NUMBER: > 1 writes value / divisor (as_float: a float's repr) or value // divisor
    as_float: bool = True


def literal(json_text: str) -> Source:
    return Source("LITERAL", json_text)


def number(field: str, when_flags: int = 0, divisor: int = 1, as_float: bool = True) -> Source:
    """A numeric field of the record header (abi.HEADER_FIELDS), null unless its flags have when_flags.

    As the integer it is; with a divisor, as value / divisor (a float, written as json.dumps writes one)
    or, as_float=False, as value // divisor.
    """
    if field not in _SIZES:
        raise ValueError("no header field %r in bpftools/abi.py HEADER_FIELDS" % field)
    return Source("NUMBER", field=field, when_flags=when_flags, divisor=divisor, as_float=as_float)


TS, EVENT, DIR, PATH, PATH2 = Source("TS"), Source("EVENT"), Source("DIR"), Source("NAME1"), Source("NAME2")
PPID, COMM, CGROUP, IN_CGROUP = Source("PPID"), Source("COMM"), Source("CGROUP"), Source("IN_CGROUP")
ERROR, SYSCALL, BYTES = Source("ERROR"), Source("SYSCALL"), Source("BYTES")


class Formatter:
    """One compiled formatter: its tables, its cgroup and parent caches, its output buffer."""

    def __init__(self, kind: int, colour: bool = False):
        require()
        self._e = ffi.gc(lib.fp_new(kind, int(colour)), lib.fp_free)
        if self._e == ffi.NULL:
            raise MemoryError("fastpath: no memory for a formatter")
        self.kind = kind
        for code, name in enumerate(abi.EVENT_NAMES):
            self._name(lib.FP_T_EVENT, code, name)
        for nr, name in abi.SYSCALL_NAMES.items():
            self._name(lib.FP_T_SYSCALL, nr, name)
        for err, name in errno.errorcode.items():
            if 0 <= err < lib.FP_TABLE_SIZE:
                self._name(lib.FP_T_ERRNO, err, name)
        for nr in abi._BYTES_NRS:
            lib.fp_set_moves_bytes(self._e, nr)
        self.configure(0.0, False)

    @classmethod
    def json(cls, fields) -> Formatter:
        """JSON Lines; fields: (key, Source) in the order of the record's keys."""
        f = cls(lib.FP_JSON if lib is not None else 0)
        first = True
        for key, src in fields:
            if src.op == "IN_CGROUP":
                continue
            prefix = "{" if first else ","
            if src.op != "CGROUP":
                prefix += '"%s":' % key
            first = False
            off, size, signed = 0, 0, False
            if src.op == "NUMBER":
                off = HEADER_OFFSETS[src.field]
                size, signed = _SIZES[src.field]
            k, a = prefix.encode(), src.arg.encode()
            if lib.fp_add_op(f._e, getattr(lib, "FP_OP_" + src.op), k, len(k), a, len(a), off, size, int(signed),
                             src.when_flags, src.divisor, int(src.as_float)):
                raise ValueError("fastpath: cannot add the JSON field %r" % key)
        return f

    @classmethod
    def text(cls, colour: bool, colours: dict[str, str]) -> Formatter:
        """One aligned line per event (views/text.py); colours: event name -> ANSI colour."""
        f = cls(lib.FP_TEXT if lib is not None else 1, colour)
        for code, name in enumerate(abi.EVENT_NAMES):
            f._name(lib.FP_T_COLOUR, code, colours.get(name, "0"))
        return f

    def _name(self, table: int, index: int, name: str) -> None:
        raw = name.encode()
        if lib.fp_set_name(self._e, table, index, raw, len(raw)):
            raise ValueError("fastpath: table %d has no slot %d" % (table, index))

    def configure(self, offset: float, moves_bytes: bool) -> None:
        """offset: wall clock - monotonic clock; moves_bytes: the backend's reads and writes carry their bytes."""
        lib.fp_configure(self._e, offset, int(moves_bytes), sum(1 << c for c in abi._BYTES_OPS),
                         abi.F_NO_BYTES, abi.F_DIR, abi.F_TIMED)

    def set_cgroup(self, cgroup_id: int, wanted: bool, text: bytes) -> None:
        """Events of cgroup_id are written (with text: its JSON fragment or its text column) or dropped."""
        if lib.fp_set_cgroup(self._e, cgroup_id, int(wanted), text, len(text)):
            raise MemoryError("fastpath: no memory for a cgroup")

    def drop_cgroup(self, cgroup_id: int) -> None:
        """Forget a cgroup (it changed): its next event asks again."""
        lib.fp_drop_cgroup(self._e, cgroup_id)

    def clear_cgroups(self) -> None:
        lib.fp_clear_cgroups(self._e)

    def set_ppid(self, pid: int, ppid: int | None) -> None:
        lib.fp_set_ppid(self._e, pid, -1 if ppid is None else ppid)

    @property
    def events(self) -> int:
        """File events written so far."""
        return lib.fp_events(self._e)

    def drain(self, ring, write, cgroup, ppid, record) -> None:
        """Consume what the ring holds now; Python is asked what only it knows.

        write(buffer): formatted lines (the buffer is valid during the call);
        cgroup(id) -> (wanted, text) for a cgroup met the first time;
        ppid(pid) -> int or None for a process met the first time;
        record(memoryview): a record that is not a file event (or does not decode).
        """
        e, r = self._e, ring.native.ring
        limit = lib.fp_producer(r)
        while True:
            rc = lib.fp_drain(e, r, limit)
            n = lib.fp_out_len(e)
            if n:
                write(ffi.buffer(lib.fp_out(e), n))
                lib.fp_out_clear(e)
            if rc == lib.FP_DONE:
                return
            if rc == lib.FP_FULL:
                continue
            if rc != lib.FP_NEED:
                raise MemoryError("fastpath: no memory for the output")
            why = lib.fp_why(e)
            if why == lib.FP_WHY_CGROUP:
                cgid = lib.fp_need_cgroup(e)
                wanted, text = cgroup(cgid)
                self.set_cgroup(cgid, wanted, text)
            elif why == lib.FP_WHY_PPID:
                pid = lib.fp_need_pid(e)
                self.set_ppid(pid, ppid(pid))
            else:
                record(ring.view(lib.fp_need_off(e), lib.fp_need_len(e)))
                lib.fp_skip(e, r)


class NativeRing:
    """A ring's positions and data as fastpath.c reads them; buffers: consumer (writable), producer, data."""

    def __init__(self, consumer, producer, data, mask: int):
        require()
        self._buffers = [ffi.from_buffer(consumer, require_writable=True), ffi.from_buffer(producer),
                         ffi.from_buffer(data)]
        self.ring = ffi.new("struct fp_ring *")
        self.ring.consumer = ffi.cast("uint64_t *", self._buffers[0])
        self.ring.producer = ffi.cast("const uint64_t *", self._buffers[1])
        self.ring.data = ffi.cast("const uint8_t *", self._buffers[2])
        self.ring.mask = mask

    def release(self) -> None:
        """Let go of the buffers (an mmap cannot close while they are held)."""
        for buf in self._buffers:
            ffi.release(buf)
        self._buffers = []


def fixed6(value: float) -> str:
    """fastpath.c's "%.6f" (for its tests)."""
    require()
    buf = ffi.new("char[64]")
    return ffi.string(buf, lib.fp_fixed6(value, buf)).decode()


def float_repr(value: float) -> str:
    """fastpath.c's repr() of a float (for its tests)."""
    require()
    buf = ffi.new("char[64]")
    return ffi.string(buf, lib.fp_repr(value, buf)).decode()
