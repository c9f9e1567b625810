"""Text output for `fstrace trace`: one aligned line per event, colour on a terminal."""
from __future__ import annotations

import functools
import time

from bpftools import fastpath as fp
from bpftools.cgroups.names import display_name
from bpftools.escape import errno_name, terminal_safe, text_name
from bpftools.session.contract import StreamSink
from bpftools.views.output import ReaderWatch

# basic ANSI colours read on light and dark backgrounds alike
EVENT_COLOURS = {
    "create": "32", "delete": "31", "rename": "33", "modify": "35", "close_write": "35",
    "attrib": "36", "exec": "1", "open": "34", "access": "34", "close_nowrite": "2", "sync": "33",
}
CGROUP_WIDTH = 32


def shorten_middle(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: keep // 2] + "…" + text[len(text) - (keep - keep // 2):]


BYTE_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: float) -> str:
    """Bytes as iotop shows them, in at most eight characters: 0 B, 517 B, 4.0 KiB, 12.3 MiB, 870 GiB."""
    if n < 1024:
        return "%d B" % round(n)
    for unit in BYTE_UNITS:
        n /= 1024
        if n < 99.95 or unit == BYTE_UNITS[-1]:
            return "%.1f %s" % (n, unit)
        if n < 1023.5:
            return "%d %s" % (round(n), unit)
    raise AssertionError("unreachable")


def human_time(ns: float) -> str:
    """A time in at most seven characters: 850 ns, 12.3 us, 480 us, 3.0 ms, 250 ms, 1.50 s, 75.0 s."""
    for unit, scale in (("ns", 1), ("us", 1e3), ("ms", 1e6)):
        if ns < 999.5 * scale:
            v = ns / scale
            return "%d %s" % (round(v), unit) if v >= 99.95 or unit == "ns" else "%.1f %s" % (v, unit)
    s = ns / 1e9
    return "%.2f s" % s if s < 9.995 else "%.1f s" % s if s < 99.95 else "%d s" % round(s)


def cgroup_label(ev) -> str:
    """The container's name (else runtime:short-id) or the unit; else the cgroup's path."""
    return label_of(ev.cgroup, ev.names, ev.cgroup_id)


def label_of(cgroup: str | None, names, cgroup_id: int) -> str:
    if names.unit or names.container:
        return display_name(cgroup or "", names) if names.container else names.unit
    return cgroup if cgroup is not None else "unknown:%d" % cgroup_id


@functools.lru_cache(maxsize=4)
def _clock(second: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(second))


@functools.lru_cache(maxsize=4096)
def _cgroup_column(label: str) -> str:
    return "%-*s" % (CGROUP_WIDTH, terminal_safe(shorten_middle(label, CGROUP_WIDTH)))


def event_line(ev, colour: bool) -> str:
    """One FileEvent's line in Python: the reference the compiled formatter must match byte for byte.

    Users' output is the compiled formatter's (TextSink.formatter); this is the test oracle
    (tests/unit/test_fastpath.py).
    """
    second = int(ev.ts)
    stamp = "%s.%06d" % (_clock(second), int((ev.ts - second) * 1e6))
    what = ev.event + ("/" if ev.dir else "")
    path = text_name(ev.path) or "?"
    if ev.path2 is not None:
        path += " -> " + text_name(ev.path2)
    err = errno_name(ev.ret)
    who = "%s[%d]" % (text_name(ev.comm), ev.pid)
    if colour:
        what = "\x1b[%sm%-14s\x1b[0m" % (EVENT_COLOURS[ev.event], what)
        if err:
            err = "\x1b[31m" + err + "\x1b[0m"
    else:
        what = "%-14s" % what
    line = "%s %s %-22s %s %s" % (stamp, _cgroup_column(cgroup_label(ev)), who, what, path)
    said = [human_bytes(ev.bytes)] if ev.bytes is not None else []
    if ev.latency_ns is not None:
        said.append(human_time(ev.latency_ns))
    if said:
        line += "  (%s)" % ", ".join(said)
    return line + ("  " + err if err else "")


def start_lines(info) -> list[str]:
    """What trace says on stderr once tracing has begun: each thing once, with its true reason."""
    lines = ["fstrace: backend %s on kernel %s; events: %s" % (info.backend, info.kernel, ",".join(info.events))]
    for backend in info.passed_over:     # the ones tried first
        lines.append("fstrace: not using %s: %s" % (backend, info.backend_reasons.get(backend, "?")))
    if info.blind_spots:
        lines.append("fstrace: %s does not see: %s" % (info.backend, "; ".join(info.blind_spots)))
    if info.armed:
        lines.append("fstrace: fsnotify armed on %d filesystems" % len(info.armed))
    for tp, why in info.skipped.items():
        lines.append("fstrace: skipped %s: %s" % (tp, why))
    if info.missing_syscalls:
        lines.append("fstrace: this kernel lacks %s" % ", ".join(info.missing_syscalls))
    for source, state in info.cgroup_sources.items():
        if state != "live":
            lines.append("fstrace: cgroup source %s %s" % (source, state))
    if info.command_cgroup:
        lines.append("fstrace: running the command in cgroup %s" % info.command_cgroup)
    return lines


LOSS_EVERY_S = 1.0      # loss is said at most once per this, with the count since the last time


class TextSink(StreamSink):
    def __init__(self, out, err, colour: bool, clock=time.monotonic):
        self.out = out
        self._reader = ReaderWatch(out)
        self.err = err
        self.colour = colour
        self._clock = clock
        self._lost_pending = 0
        self._lost_said = None      # when loss was last said
        self.formatter = fp.Formatter.text(colour, EVENT_COLOURS)

    def _line(self, text: str) -> None:
        self.out.write(text.encode("utf-8", "surrogateescape") + b"\n")

    def start(self, info, ts: float, pid: int) -> None:
        lines = start_lines(info)
        self.err.write("\n".join(lines) + "\n")
        self.err.flush()

    def cgroup_text(self, cgroup_id: int, cgroup: str | None, names) -> bytes:
        """What the formatter writes for the cgroup in each of its events: its column."""
        return _cgroup_column(label_of(cgroup, names, cgroup_id)).encode("utf-8", "surrogateescape")

    def write(self, data) -> None:
        """Event lines as the formatter wrote them."""
        self.out.write(data)

    def cgroup(self, change) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(change.ts)) + ".%06d" % int(change.ts % 1 * 1e6)
        self._line("%s cgroup %s %s (id %d)" % (stamp, change.action, terminal_safe(change.path), change.id))

    def lost(self, count: int, ts: float) -> None:
        """Loss on stderr at most once a second, each lost record counted once."""
        self._lost_pending += count
        now = self._clock()
        if self._lost_said is None or now - self._lost_said >= LOSS_EVERY_S:
            self._say_lost(now)

    def _say_lost(self, now: float) -> None:
        if self._lost_pending:
            self.err.write("fstrace: lost %d events (ring buffer full)\n" % self._lost_pending)
            self._lost_pending = 0
            self._lost_said = now

    def summary(self, ts: float, totals, backend: str, duration: float) -> None:
        self._say_lost(self._clock())
        self.err.write("fstrace: %d events in %.1f s, %d lost\n" % (totals.events, duration, totals.lost))
        self.err.flush()

    def flush(self) -> None:
        self.out.flush()
        self._reader.check()
