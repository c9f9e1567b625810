"""A probe that plays back what a real probe delivered: ring-buffer records and counter drains.

Sessions take their probe as a parameter (session/runner.py, ``load_probe``),
so the whole streaming and counting paths run on recorded bytes without
root or BPF (each poll lays the records out in memory as the kernel's ring
would hold them, kernel/ringbuf.py MemoryRing): tests/unit/test_replay.py
and bench/pipeline.py do.  A recording is a sequence of frames, each b"R",
b"C" or b"H", a u32 length and a payload: one ring-buffer record (R), the
key/value pairs of one counter drain (C, abi.AGG_KEY + abi.AGG_VALUE each)
or of one drain of the latency histograms (H, abi.HIST_KEY + abi.HIST_VALUE
each).  A poll delivers the records up to the next drain; a swap of the
counters returns that drain.
"""
from __future__ import annotations

import struct

from bpftools.abi import AGG_KEY, AGG_VALUE, EVENT_NAMES, HIST_KEY, HIST_VALUE
from bpftools.kernel.backends import TRACEPOINT
from bpftools.kernel.counters import parse, parse_hists
from bpftools.kernel.probe import KernelHeaders, LoadReport
from bpftools.kernel.ringbuf import MemoryRing

FRAME = struct.Struct("=cI")
RECORD, DRAIN, HISTS = b"R", b"C", b"H"
PAIR = AGG_KEY.size + AGG_VALUE.size
HIST_PAIR = HIST_KEY.size + HIST_VALUE.size


def frame(kind: bytes, payload: bytes) -> bytes:
    return FRAME.pack(kind, len(payload)) + payload


def frames(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (kind, payload) frames of a recording."""
    out, pos = [], 0
    while pos < len(data):
        kind, size = FRAME.unpack_from(data, pos)
        pos += FRAME.size
        if kind not in (RECORD, DRAIN, HISTS) or pos + size > len(data):
            raise ValueError("not a recording: bad frame at byte %d" % (pos - FRAME.size))
        out.append((kind, data[pos:pos + size]))
        pos += size
    return out


def drain_payload(keys_values: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(k + v for k, v in keys_values)


class _Counters:
    """The counters of a replayed FST_AGGREGATE program: the first swap returns every recorded drain."""

    def __init__(self, drains: list[bytes], hist_drains: list[bytes] = ()):
        self._drains = drains
        self._hist_drains = list(hist_drains)
        self.hists = []
        self.forgotten: list[int] = []

    def start(self) -> None:
        pass

    def swap(self):
        hist, self._hist_drains = b"".join(self._hist_drains), []
        pairs = range(0, len(hist), HIST_PAIR)
        self.hists = parse_hists(b"".join(hist[i:i + HIST_KEY.size] for i in pairs),
                                 b"".join(hist[i + HIST_KEY.size:i + HIST_PAIR] for i in pairs))
        payload, self._drains = b"".join(self._drains), []
        pairs = range(0, len(payload), PAIR)
        return parse(b"".join(payload[i:i + AGG_KEY.size] for i in pairs),
                     b"".join(payload[i + AGG_KEY.size:i + PAIR] for i in pairs))

    def overflow(self) -> list[int]:
        return [0] * len(EVENT_NAMES)

    def hist_overflow(self) -> int:
        return 0

    def forget(self, file_key: int) -> None:
        self.forgotten.append(file_key)


class ReplayProbe:
    """Stands in for kernel.probe.Probe: the same report, polls and counters, from a recording."""

    def __init__(self, recording: bytes, cfg, on_record, backend: str = "replay"):
        self.cfg = cfg
        self._on_record = on_record
        recorded = frames(recording)
        self._records = [payload for kind, payload in recorded if kind == RECORD]
        self._drains = [payload for kind, payload in recorded if kind == DRAIN]
        self._hist_drains = [payload for kind, payload in recorded if kind == HISTS]
        # tests/replay/record.py records with the tracepoint backend, whose records carry bytes and times
        self.report = LoadReport(backend, headers=KernelHeaders("(recording)", "replay", "replay"),
                                 moves_bytes=True, blind_spots=list(TRACEPOINT.blind_spots), times=True)
        self.cgroup_filter: set[int] = set()

    def add_cgroups(self, ids) -> None:
        self.cgroup_filter.update(ids)

    def seed_fd(self, *_args) -> bool:
        return False

    def counters(self) -> _Counters:
        return _Counters(self._drains, self._hist_drains)

    def poll(self, _timeout_ms: int) -> None:
        records, self._records = self._records, []
        ring = MemoryRing(records)      # laid out as in the kernel's ring, walked as a real probe walks it
        try:
            ring.consume(self._on_record)
        finally:
            ring.close()

    def lost(self) -> int:
        return 0

    def close(self) -> None:
        pass
