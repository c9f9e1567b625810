"""`fstrace export`: serve the in-kernel counters as Prometheus / OpenMetrics metrics.

A thin click command: options -> session Options + export_state.Limits; the
session's main loop feeds an ExportState once per interval, and
prometheus_client's HTTP server answers scrapes from its own threads with
what the state last published (bpftools/export/state.py).
"""
from __future__ import annotations

import os
import platform
import re

import click

from bpftools import __version__
from bpftools.cgroups.runtimes import named
from bpftools.cli.app import run_session, say
from bpftools.cli.options import count_filters, parse_duration, session_options
from bpftools.errors import UsageError
from bpftools.export import prometheus
from bpftools.export import state as export_state

DEFAULT_PORT = 19435
DEFAULT_LISTEN = "127.0.0.1:%d" % DEFAULT_PORT

EPILOG = """\b
Examples:
  fstrace export                          http://127.0.0.1:19435/metrics
  fstrace export --listen :19435 --cgroup-depth 3
  fstrace export --exclude 'user.slice' --max-series 2000
  curl -s localhost:19435/metrics | grep ^fstrace_events_total
  curl -s localhost:19435/ready          200 once counting has begun, 503 before
"""


def parse_listen(text: str) -> tuple[str, int]:
    """--listen HOST:PORT, [IPV6]:PORT or :PORT (every IPv4 address) -> (host, port)."""
    m = re.fullmatch(r"(?:\[([^\]]+)\]|([^:\[\]]*)):(\d{1,5})", text)
    if not m or not 0 < int(m.group(3)) < 65536:
        raise UsageError("bad --listen %r: give HOST:PORT, [IPV6]:PORT or :PORT, e.g. --listen %s"
                         % (text, DEFAULT_LISTEN))
    host = m.group(1) if m.group(1) is not None else m.group(2)
    return host or "0.0.0.0", int(m.group(3))


@click.command("export", epilog=EPILOG)
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="HOST:PORT",
              help="Where to serve /metrics: HOST:PORT, [IPV6]:PORT, or :PORT for every IPv4 address.")
@click.option("-i", "--interval", type=float, default=1.0, show_default=True, metavar="SECONDS",
              help="Seconds between reads of the kernel's counters (what a scrape can be behind by).")
@click.option("--cgroup-depth", "depth", type=click.IntRange(min=1), metavar="N",
              help="Label each cgroup with its path cut to N levels (default: the whole path).")
@click.option("--include", multiple=True, metavar="GLOB",
              help="Only cgroups matching GLOB, or below one that does (repeatable).")
@click.option("--exclude", multiple=True, metavar="GLOB",
              help="Not cgroups matching GLOB, nor those below one that does (repeatable).")
@click.option("--max-series", type=click.IntRange(min=2 * len(export_state.EVENT_NAMES)),
              default=export_state.DEFAULT_MAX_SERIES, show_default=True, metavar="N",
              help="At most N fstrace_events_total series; the rest is counted in cgroup=\"%s\"."
                   % export_state.OVERFLOW)
@click.option("--ttl", default="5m", show_default=True, metavar="TIME",
              help="How long the series of a removed cgroup (--per-process: of an idle process) stay.")
@click.option("--per-process", is_flag=True, help="Also label events with comm and pid (many more series).")
@count_filters
def export_command(listen, interval, depth, include, exclude, max_series, ttl, per_process, **filters):
    """Serve file activity per cgroup as Prometheus metrics on /metrics.

    /ready answers 503 until the BPF programs are attached, then 200 (for
    a readiness probe).

    Counts are kept in the kernel and read once per interval; scrapes are
    answered from a thread with the last counts, in the Prometheus text
    format or OpenMetrics, as the scraper asks.  Every event type is counted
    unless -e says otherwise.  SIGTERM or SIGINT end it.
    """
    if interval <= 0:
        raise UsageError("bad --interval %g: give a positive number of seconds" % interval)
    host, port = parse_listen(listen)
    limits = export_state.Limits(depth=depth, include=tuple(include), exclude=tuple(exclude), max_series=max_series,
                                 ttl=parse_duration(ttl), per_process=per_process)
    opts = session_options(failed=False, aggregate=True, **filters)   # the filters top and report have
    state = export_state.ExportState(limits, names_of=lambda path: named(path, read=False))
    server, thread = prometheus.serve(state, host, port)

    def announce(info):
        state.start({"version": __version__, "backend": info.backend, "kernel": info.kernel,
                     "python": platform.python_version()})
        say("serving http://%s/metrics (pid %d), counting with the %s backend on kernel %s"
            % (prometheus.url_host(host, port), os.getpid(), info.backend, info.kernel))
    try:
        run_session(opts, prometheus.ExportSink(state, interval), announce)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
