"""The in-kernel counters of FST_AGGREGATE (bpf/common.bpf.c): swap, drain, forget.

The kernel counts file events in one of two identical hash maps, agg_a and
agg_b, whichever agg_slot[0] points to.  Once per tick ``Counters.swap()``
points agg_slot[0] at the other (empty) map -- the bpf(2) update of a map of
maps returns only after every BPF program that could still be using the old
map has finished -- and then reads and empties the old map with one batched
lookup-and-delete.  Counts are therefore exact at any event rate: an event is
in exactly one tick.  The latency histograms (hist_a, hist_b, hist_slot) are
swapped and drained the same way, right after the counters: a histogram's
tick may begin a moment after the counters' tick, and nothing is in two
ticks or in none.

This module mirrors ``struct fst_agg_key`` and ``struct fst_agg_val`` of
bpf/fstrace.h (tests/privileged/test_counters.py compares them with what BCC
compiles) and talks to the maps through their file descriptors with the
bpf(2) syscall: batched reads parse straight from one buffer, which keeps a
tick with 10k entries in the low milliseconds.
"""
from __future__ import annotations

import ctypes
import errno
import os
import struct

from bpftools.abi import AGG_KEY, AGG_VALUE, EVENT_NAMES, HIST_BUCKETS, HIST_KEY, HIST_VALUE, LAT_SLOTS, Entry, Hist
from bpftools.kernel.sysbpf import bpf

EV_COUNT = len(EVENT_NAMES)

BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_LOOKUP_AND_DELETE_BATCH = 25
ATTR_SIZE = 64                  # covers the elem and batch members of union bpf_attr
BATCH = 4096                    # entries per batched syscall

def _elem_attr(map_fd: int, key, value=None) -> ctypes.Array:
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("=I4xQQQ", attr, 0, map_fd, ctypes.addressof(key),
                     ctypes.addressof(value) if value is not None else 0, 0)
    return attr


def possible_cpus(text: str) -> int:
    """Number of CPUs in a /sys/devices/system/cpu/possible list such as "0-3,5"."""
    count = 0
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        count += int(hi or lo) - int(lo) + 1
    return count


_LAT = EV_COUNT + 2                 # lat_ns[] in a value tuple
_TIMED = _LAT + LAT_SLOTS           # timed[]
_COMM = _TIMED + LAT_SLOTS


def parse(keys: bytes, values: bytes) -> list[Entry]:
    """Entries from the raw key and value arrays of a batched read."""
    new = tuple.__new__         # an Entry without its Python-level __new__: 10k of them per tick
    return [new(Entry, (*k, v[_COMM].split(b"\0", 1)[0], v[:EV_COUNT], v[EV_COUNT], v[EV_COUNT + 1],
                        v[_LAT:_TIMED], v[_TIMED:_COMM]))
            for k, v in zip(AGG_KEY.iter_unpack(keys), AGG_VALUE.iter_unpack(values))]


def parse_hists(keys: bytes, values: bytes) -> list[Hist]:
    """Latency histograms from the raw key and value arrays of a batched read."""
    return [Hist(k[0], k[1], v[:HIST_BUCKETS], v[HIST_BUCKETS], v[HIST_BUCKETS + 1])
            for k, v in zip(HIST_KEY.iter_unpack(keys), HIST_VALUE.iter_unpack(values))]


class CounterError(OSError):
    pass


class Counters:
    """The kernel side of one aggregation: map fds in, entries and overflow counts out."""

    def __init__(self, slot_fd: int, map_fds: tuple[int, int], overflow_fd: int, named_fd: int,
                 hist_slot_fd: int = -1, hist_fds: tuple[int, int] = (-1, -1)):
        self.slot_fd = slot_fd
        self.map_fds = map_fds
        self.hist_slot_fd = hist_slot_fd
        self.hist_fds = hist_fds
        self.hist_full_fd = -1
        self._hist_full_seen = 0
        self.hists: list[Hist] = []             # the histograms drained by the last swap()
        self.overflow_fd = overflow_fd
        self.named_fd = named_fd
        with open("/sys/devices/system/cpu/possible") as f:
            self.cpus = possible_cpus(f.read())      # a per-CPU value has one slot per possible CPU
        self.active = 0
        self._keys = ctypes.create_string_buffer(AGG_KEY.size * BATCH)
        self._values = ctypes.create_string_buffer(AGG_VALUE.size * BATCH)
        self._hist_keys = ctypes.create_string_buffer(HIST_KEY.size * BATCH)
        self._hist_values = ctypes.create_string_buffer(HIST_VALUE.size * BATCH)
        self._overflow_seen = [0] * EV_COUNT

    @classmethod
    def from_probe(cls, probe) -> Counters:
        t = probe.bpf
        counters = cls(t["agg_slot"].map_fd, (t["agg_a"].map_fd, t["agg_b"].map_fd),
                       t["agg_overflow"].map_fd, t["agg_named"].map_fd,
                       t["hist_slot"].map_fd, (t["hist_a"].map_fd, t["hist_b"].map_fd))
        counters.hist_full_fd = t["hist_full"].map_fd
        return counters

    def _point(self, index: int) -> None:
        key = ctypes.c_uint32(0)
        for slot_fd, fds in ((self.slot_fd, self.map_fds), (self.hist_slot_fd, self.hist_fds)):
            if slot_fd < 0:
                continue
            fd = ctypes.c_uint32(fds[index])
            rc = bpf(BPF_MAP_UPDATE_ELEM, _elem_attr(slot_fd, key, fd))
            if rc < 0:
                raise CounterError(-rc, "switching the counter map failed: %s" % os.strerror(-rc))
        self.active = index

    def start(self) -> None:
        """Start counting (into the first map)."""
        self._point(0)

    def swap(self) -> list[Entry]:
        """Count into the other map from now on; the entries of the one counted into so far."""
        old = self.active
        self._point(1 - old)
        if self.hist_slot_fd >= 0:
            self.hists = self._drain(self.hist_fds[old], self._hist_keys, self._hist_values,
                                     HIST_KEY.size, HIST_VALUE.size, parse_hists)
        return self.drain(self.map_fds[old])

    def drain(self, map_fd: int) -> list[Entry]:
        """Read and delete every entry of a counter map no program writes to any more."""
        return self._drain(map_fd, self._keys, self._values, AGG_KEY.size, AGG_VALUE.size, parse)

    def _drain(self, map_fd: int, keys, values, key_size: int, value_size: int, parse_batch) -> list:
        entries: list = []
        token_in = ctypes.c_uint64(0)
        token_out = ctypes.c_uint64(0)
        attr = ctypes.create_string_buffer(ATTR_SIZE)
        first = True
        while True:
            struct.pack_into("=QQQQIIQQ", attr, 0, 0 if first else ctypes.addressof(token_in),
                             ctypes.addressof(token_out), ctypes.addressof(keys),
                             ctypes.addressof(values), BATCH, map_fd, 0, 0)
            rc = bpf(BPF_MAP_LOOKUP_AND_DELETE_BATCH, attr)
            count = struct.unpack_from("=I", attr, 32)[0]
            if count:
                entries += parse_batch(keys.raw[:count * key_size], values.raw[:count * value_size])
            if rc == -errno.ENOENT:
                return entries
            if rc < 0:
                raise CounterError(-rc, "reading the counter map failed: %s" % os.strerror(-rc))
            token_in.value = token_out.value
            first = False

    def overflow(self) -> list[int]:
        """Operations per event type that found the counter map full, since the last call."""
        delta = []
        value = ctypes.create_string_buffer(8 * self.cpus)
        for op in range(EV_COUNT):
            key = ctypes.c_uint32(op)
            rc = bpf(BPF_MAP_LOOKUP_ELEM, _elem_attr(self.overflow_fd, key, value))
            total = sum(struct.unpack_from("=%dQ" % self.cpus, value)) if rc == 0 else self._overflow_seen[op]
            delta.append(total - self._overflow_seen[op])
            self._overflow_seen[op] = total
        return delta

    def hist_overflow(self) -> int:
        """Timed operations whose (cgroup, event type) found the histogram map full, since the last call."""
        if self.hist_full_fd < 0:
            return 0
        value = ctypes.create_string_buffer(8 * self.cpus)
        rc = bpf(BPF_MAP_LOOKUP_ELEM, _elem_attr(self.hist_full_fd, ctypes.c_uint32(0), value))
        total = sum(struct.unpack_from("=%dQ" % self.cpus, value)) if rc == 0 else self._hist_full_seen
        delta, self._hist_full_seen = total - self._hist_full_seen, total
        return delta

    def forget(self, file_key: int) -> None:
        """Have the kernel send the name of this file key again at its next event."""
        key = ctypes.c_uint64(file_key)
        bpf(BPF_MAP_DELETE_ELEM, _elem_attr(self.named_fd, key))
