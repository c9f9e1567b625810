"""The exporter's two faces: a counting sink that feeds an ExportState, and the scrape side.

The session hands ExportSink one model.Tick per interval; prometheus_client's
HTTP server answers scrapes from its own threads through Collector, with
what the state last published.
"""
from __future__ import annotations

import time

from bpftools.abi import EVENT_NAMES
from bpftools.errors import UsageError
from bpftools.export.state import OVERFLOW, ExportState
from bpftools.model import Tick
from bpftools.session.contract import CountSink


def serve(state: ExportState, host: str, port: int):
    """Start answering scrapes (from a thread): the server and its thread."""
    from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)     # the exporter's own CPU and memory
    registry.register(Collector(state))
    try:
        return start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        raise UsageError("cannot listen on %s: %s" % (url_host(host, port), e.strerror or e)) from None

def url_host(host: str, port: int) -> str:
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


class ExportSink(CountSink):
    """The session's sink for export: ticks and cgroup changes into an ExportState."""

    finished = False

    def __init__(self, state: ExportState, interval: float):
        self.state = state
        self.interval = interval

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
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

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
