"""`fstrace trace`: every file event as a line of text or JSON."""
from __future__ import annotations

import os
import sys

import click

from bpftools.cli.app import run_session
from bpftools.cli.options import RunsCommand, open_output, output_option, session_options, trace_filters

EPILOG = """\b
Examples:
  fstrace trace                          every file event (but reads and writes)
  fstrace trace --json | jq .path        JSON Lines
  fstrace trace -e create,delete,rename --cgroup system.slice
  fstrace trace -e all -- make -j2       a command and all it starts, with reads/writes
  fstrace trace --failed -c nginx        include failed attempts of nginx
  fstrace trace --json -o ev.jsonl -- ./job.sh   events to a file, the job's output to the terminal
  fstrace trace --container web-1        one container, by the name its runtime gave it
  fstrace trace --json --slower-than 10ms   opens, reads, writes and syncs that took 10 ms or more
"""


@click.command(cls=RunsCommand, epilog=EPILOG)
@click.option("--json", "as_json", is_flag=True, help="Write JSON Lines (start, event, cgroup, lost, summary).")
@output_option("the events")
@click.option("-d", "--duration", metavar="TIME", help="Stop after TIME (30, 30s, 500ms, 2m, 1h).")
@click.option("--slower-than", "slower_than", metavar="TIME",
              help="Only opens, reads, writes and syncs that took at least TIME (10ms, 250us, 1s), decided in "
                   "the kernel; without -e every such event type, reads and writes included.")
@trace_filters
@click.option("--dump-bpf", is_flag=True, hidden=True, help="Print the BPF program and its flags, then exit.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- CMD ARGS…]")
def trace(as_json, output, duration, slower_than, pids, comms, event_spec, cgroups, containers, pods, failed,
          backend, mounts, dump_bpf, command):
    """Print file events as they happen, one per line.

    With -- CMD, run CMD in a new cgroup (a transient scope on a systemd
    host), trace only it and everything it starts, and exit with its status
    once the cgroup is empty.  Reads
    (access) and writes (modify) are left out unless asked for with -e.
    """
    opts = session_options(pids, comms, event_spec, cgroups, backend, mounts, failed, aggregate=False,
                           duration=duration, command=command, containers=containers, pods=pods,
                           slower_than=slower_than)
    if dump_bpf:
        from bpftools.kernel import backends, probe
        shown = backends.NAMES[0] if backend == "auto" else backend
        cfg = probe.ProbeConfig(backend=shown, events=opts.events, failed=failed, pids=opts.pids,
                                comms=opts.comms, cgroup_filter=bool(cgroups or command),
                                slower_than_ns=opts.slower_than_ns)
        flags, text = probe.program(cfg, os.getpid(), "bpf")
        click.echo("// backend %s; cflags: %s" % (shown, " ".join(flags)))
        click.echo(text)
        return
    out = open_output(output, binary=True, command=command)
    if as_json:
        from bpftools.views.jsonl import JsonSink
        sink = JsonSink(out)
    else:
        from bpftools.views.text import TextSink
        sink = TextSink(out, sys.stderr, colour=out.isatty() and "NO_COLOR" not in os.environ)
    try:
        _, status = run_session(opts, sink)
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    sys.exit(status)
