"""JSON Lines output: the record contract (man/fstrace.8, JSON RECORDS; docs/architecture.md)."""
from __future__ import annotations

import json

from bpftools import fastpath as fp
from bpftools.abi import F_TIMED
from bpftools.escape import decode_fs, decode_name, errno_name
from bpftools.session.contract import StreamSink
from bpftools.session.tracefile import RECORD_VERSION
from bpftools.views.output import ReaderWatch

# key -> what it holds; the order of keys in every event record.
EVENT_FIELDS = (
    ("type", '"event"'),
    ("ts", "time of the event, seconds since the epoch"),
    ("event", "open exec access modify attrib close_write close_nowrite create delete rename sync"),
    ("dir", "true when the object is a directory"),
    ("path", "absolute path (relative only when no cwd or dirfd could be found)"),
    ("path2", "the new name of a rename, else null"),
    ("pid", "process id (tgid)"),
    ("tid", "thread id"),
    ("ppid", "parent process id, null when unknown"),
    ("uid", "real user id"),
    ("comm", "process name"),
    ("cgroup_id", "cgroup2 id (bpf_get_current_cgroup_id)"),
    ("cgroup", "cgroup path relative to the cgroup2 root, null when unknown"),
    ("unit", "systemd unit, else null"),
    ("container", "container as runtime:short-id, else null"),
    ("pod", "Kubernetes pod uid, else null"),
    ("container_name", "the container's name as its runtime knows it (web-1), else null"),
    ("image", "the image the container runs (nginx:1.27), else null"),
    ("pod_name", "Kubernetes pod name, else null"),
    ("pod_namespace", "Kubernetes namespace of the pod, else null"),
    ("ret", "syscall return value"),
    ("error", "errno name of a failed operation, else null"),
    ("syscall", "the syscall that caused the event"),
    ("bytes", "access and modify: the bytes the syscall moved (its return value; 0 at the end of a file); "
              "null for other events, truncates, failed calls and backends that cannot know (see BYTES)"),
    ("latency_us", "timed operations (opens, reads, writes, syncs): the syscall's time in microseconds, "
                   "to the nanosecond; null for other events and where the backend cannot know (see LATENCY)"),
)

# Where each key's value comes from, for the compiled formatter (bpftools/fastpath), which writes
# every event record users get: keys in EVENT_FIELDS order, each from its source.  A numeric field of
# the record header is fp.number("<abi.HEADER_FIELDS name>"[, when_flags=, divisor=]): no C to change.
# The cgroup's keys (CGROUP_KEYS) are one fragment per cgroup, made here by cgroup_fragment().
EVENT_SOURCES = {
    "type": fp.literal('"event"'), "ts": fp.TS, "event": fp.EVENT, "dir": fp.DIR, "path": fp.PATH,
    "path2": fp.PATH2, "pid": fp.number("pid"), "tid": fp.number("tid"), "ppid": fp.PPID, "uid": fp.number("uid"),
    "comm": fp.COMM, "cgroup_id": fp.number("cgroup_id"), "cgroup": fp.CGROUP, "unit": fp.IN_CGROUP,
    "container": fp.IN_CGROUP, "pod": fp.IN_CGROUP, "container_name": fp.IN_CGROUP, "image": fp.IN_CGROUP,
    "pod_name": fp.IN_CGROUP, "pod_namespace": fp.IN_CGROUP, "ret": fp.number("ret"), "error": fp.ERROR,
    "syscall": fp.SYSCALL, "bytes": fp.BYTES, "latency_us": fp.number("lat_ns", when_flags=F_TIMED, divisor=1000),
}
CGROUP_KEYS = ("cgroup", "unit", "container", "pod", "container_name", "image", "pod_name", "pod_namespace")

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_quote = json.encoder.encode_basestring     # what _dumps does to a str, minus its per-call dispatch
_EVENT_LINE = ('{"type":"event","ts":%.6f,"event":"%s","dir":%s,"path":%s,"path2":%s,"pid":%d,"tid":%d,'
               '"ppid":%s,"uid":%d,"comm":%s,"cgroup_id":%d,%s,"ret":%d,"error":%s,"syscall":"%s","bytes":%s,'
               '"latency_us":%s}\n')


def _text(raw: bytes | None) -> str:
    """A name as a JSON string (decode_name), or null."""
    return "null" if raw is None else _quote(decode_name(raw))


def cgroup_fragment(cgroup: str | None, names) -> str:
    """The cgroup's keys of an event record (CGROUP_KEYS), as JSON: the same for each of its events."""
    n = names
    return ",".join('"%s":%s' % (key, _dumps(value)) for key, value in zip(CGROUP_KEYS, (
        decode_fs(cgroup), n.unit, n.container, n.pod, n.container_name, n.image, n.pod_name, n.pod_namespace)))


def event_record(ev) -> dict:
    return {
        "type": "event", "ts": round(ev.ts, 6), "event": ev.event, "dir": ev.dir,
        "path": decode_name(ev.path), "path2": decode_name(ev.path2), "pid": ev.pid, "tid": ev.tid,
        "ppid": ev.ppid, "uid": ev.uid, "comm": decode_name(ev.comm), "cgroup_id": ev.cgroup_id,
        "cgroup": decode_fs(ev.cgroup), "unit": ev.names.unit, "container": ev.names.container, "pod": ev.names.pod,
        "container_name": ev.names.container_name, "image": ev.names.image, "pod_name": ev.names.pod_name,
        "pod_namespace": ev.names.pod_namespace, "ret": ev.ret, "error": errno_name(ev.ret), "syscall": ev.syscall, "bytes": ev.bytes,
        "latency_us": latency_us(ev.latency_ns),
    }


def latency_us(ns: int | None) -> float | None:
    """A time in ns as the JSON latency_us: microseconds, to the nanosecond (ns / 1000 is exactly that)."""
    return None if ns is None else ns / 1000


def event_json(ev) -> str:
    """One FileEvent's line in Python: the reference the compiled formatter must match byte for byte.

    Users' output is the compiled formatter's (JsonSink.formatter); this is the test oracle
    (tests/unit/test_fastpath.py), and event_record() is the same record as a dict.
    """
    ret = ev.ret
    return _EVENT_LINE % (
        ev.ts, ev.event, "true" if ev.dir else "false", _text(ev.path), _text(ev.path2), ev.pid, ev.tid,
        "null" if ev.ppid is None else ev.ppid, ev.uid, _text(ev.comm), ev.cgroup_id,
        cgroup_fragment(ev.cgroup, ev.names), ret, "null" if ret >= 0 else '"%s"' % errno_name(ret), ev.syscall,
        "null" if ev.bytes is None else ev.bytes, "null" if ev.latency_ns is None else repr(latency_us(ev.latency_ns)))


class JsonSink(StreamSink):
    """Writes one JSON object per line to a binary stream; events through the compiled formatter."""

    def __init__(self, out):
        self.out = out
        self._reader = ReaderWatch(out)
        self.formatter = fp.Formatter.json((key, EVENT_SOURCES[key]) for key, _ in EVENT_FIELDS)

    def _write(self, obj: dict) -> None:
        self.out.write(_dumps(obj).encode("utf-8", "surrogateescape") + b"\n")

    def start(self, info, ts: float, pid: int) -> None:
        self._write({
            "type": "start", "version": RECORD_VERSION, "ts": round(ts, 6), "backend": info.backend,
            "kernel": info.kernel, "pid": pid, "headers": info.headers, "headers_match": info.headers_match,
            "events": list(info.events), "tracepoints": info.tracepoints, "skipped": info.skipped,
            "missing_syscalls": info.missing_syscalls, "cgroup_sources": info.cgroup_sources,
            "command_cgroup": info.command_cgroup, "backend_reasons": info.backend_reasons,
            "armed": info.armed, "failed": info.failed, "bytes": info.bytes, "latency": info.latency,
            "slower_than_us": latency_us(info.slower_than_ns), "blind_spots": info.blind_spots,
            "command": list(info.command), "filters": info.filters,
        })

    def cgroup_text(self, cgroup_id: int, cgroup: str | None, names) -> bytes:
        """What the formatter writes for the cgroup in each of its events."""
        return cgroup_fragment(cgroup, names).encode("utf-8", "surrogateescape")

    def write(self, data) -> None:
        """Event lines as the formatter wrote them."""
        self.out.write(data)

    def cgroup(self, change) -> None:
        self._write({"type": "cgroup", "action": change.action, "ts": round(change.ts, 6),
                     "id": change.id, "path": decode_fs(change.path)})

    def lost(self, count: int, ts: float) -> None:
        self._write({"type": "lost", "ts": round(ts, 6), "count": count})

    def summary(self, ts: float, totals, backend: str, duration: float) -> None:
        self._write({"type": "summary", "ts": round(ts, 6), "events": totals.events, "lost": totals.lost,
                     "backend": backend, "duration_s": round(duration, 3), "exit_status": totals.exit_status})

    def flush(self) -> None:
        self.out.flush()
        self._reader.check()
