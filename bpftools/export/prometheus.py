"""The exporter's two faces: a counting sink that feeds an ExportState, and the scrape side.

The session hands ExportSink one model.Tick per interval; an HTTP server
answers from its own threads: /metrics through prometheus_client's WSGI app
and Collector, with what the state last published, and /ready with 200 once
the probes are attached and counting (503 before), for a readiness probe.
"""
from __future__ import annotations

import socket
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from bpftools.abi import EVENT_NAMES
from bpftools.errors import UsageError
from bpftools.export.state import CGROUP_LABELS, OVERFLOW, ExportState, latency_buckets
from bpftools.model import Tick
from bpftools.session.contract import CountSink


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        """No line per scrape on stderr."""


def app(state: ExportState, metrics):
    """The WSGI app: /ready answers whether counting has begun, everything else goes to metrics."""
    def route(environ, start_response):
        if environ.get("PATH_INFO") == "/ready":
            ready = state.published is not None
            start_response("200 OK" if ready else "503 Service Unavailable",
                           [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ready\n" if ready else b"starting: the BPF programs are not attached yet\n"]
        return metrics(environ, start_response)
    return route


def serve(state: ExportState, host: str, port: int):
    """Start answering scrapes and readiness checks (from a thread): the server and its thread."""
    from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)     # the exporter's own CPU and memory
    registry.register(Collector(state))
    server_class = type("Server", (_Server,), {})
    try:
        server_class.address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        httpd = make_server(host, port, app(state, make_wsgi_app(registry)), server_class, handler_class=_Quiet)
    except OSError as e:
        raise UsageError("cannot listen on %s: %s" % (url_host(host, port), e.strerror or e)) from None
    thread = threading.Thread(target=httpd.serve_forever, name="fstrace-http", daemon=True)
    thread.start()
    return httpd, thread

def url_host(host: str, port: int) -> str:
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


class ExportSink(CountSink):
    """The session's sink for export: ticks and cgroup changes into an ExportState."""

    finished = False

    def __init__(self, state: ExportState, interval: float):
        self.state = state
        self.interval = interval

    def start(self, info, ts: float, pid: int) -> None:
        self.state.moved_bytes = info.bytes
        self.state.timed = info.latency

    def cgroup(self, change) -> None:
        self.state.cgroup_change(change.action, change.path, time.monotonic())

    def counts(self, tick: Tick) -> None:
        self.state.add(tick, time.monotonic())

    def flush(self) -> None:
        """Scrapes read the published state; nothing to write."""


class Collector:
    """A prometheus_client collector over the state a session publishes; runs in the server's threads."""

    def __init__(self, state: ExportState):
        self.state = state

    def collect(self):
        # here, not at the top: every fstrace command imports this module, and prometheus_client takes a while
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
            InfoMetricFamily,
        )

        p = self.state.published
        if p is None:
            return
        info = InfoMetricFamily("fstrace_build", "fstrace version, the backend in use, kernel and Python.")
        info.add_metric([], p.info)
        yield info
        events = CounterMetricFamily(
            "fstrace_events", "Successful file operations per cgroup and event type, counted in the kernel "
            "(cgroup=\"%s\": label sets beyond --max-series)." % OVERFLOW, labels=self.state.labels)
        for labels, n in p.events.items():
            events.add_metric(labels, n)
        yield events
        if self.state.moved_bytes:
            for i, (name, what) in enumerate((("read", "read by"), ("write", "written by"))):
                family = CounterMetricFamily(
                    "fstrace_%s_bytes" % name, "Bytes %s read/write-family syscalls, sendfile, splice and "
                    "copy_file_range per cgroup: their return values, counted in the kernel (cgroup=\"%s\": "
                    "label sets beyond --max-series)." % (what, OVERFLOW), labels=self.state.labels[:-1])
                for labels, rw in p.moved.items():
                    family.add_metric(labels, rw[i])
                yield family
        if self.state.timed:
            family = HistogramMetricFamily(
                "fstrace_operation_seconds", "Time of opens, reads, writes and syncs (event open, create, access, "
                "modify, sync) from entry to return of the syscall, per cgroup, in the kernel's log2 buckets "
                "(cgroup=\"%s\": label sets beyond --max-series)." % OVERFLOW, labels=CGROUP_LABELS + ("event",))
            for labels, (buckets, sum_ns) in p.hists.items():
                cumulative = [(repr(le), n) for le, n in latency_buckets(buckets)]
                family.add_metric(labels, cumulative + [("+Inf", sum(buckets))], sum_value=sum_ns / 1e9)
            yield family
        yield CounterMetricFamily(
            "fstrace_folded_cgroups", "Cgroup labels that found no room below --max-series: their events "
            "are in the %s series." % OVERFLOW, value=p.folded_cgroups)
        yield CounterMetricFamily(
            "fstrace_lost_events", "Ring-buffer records lost (file names, cgroup changes); counts are exact "
            "regardless.", value=p.lost)
        uncounted = CounterMetricFamily(
            "fstrace_uncounted_events", "File operations not counted: the kernel's counter map was full.",
            labels=("event",))
        for code, n in enumerate(p.uncounted):
            uncounted.add_metric((EVENT_NAMES[code],), n)
        yield uncounted
        yield GaugeMetricFamily("fstrace_cgroups_tracked", "Cgroups alive in the cgroup map.", value=p.tracked)
        changes = CounterMetricFamily("fstrace_cgroup_events", "Cgroups created (mkdir) and removed (rmdir).",
                                      labels=("action",))
        for action, n in p.cgroup_changes.items():
            changes.add_metric((action,), n)
        yield changes
