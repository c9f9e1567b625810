"""The fstrace command line: thin click commands over Session and the views.

Every error a user can cause or meet becomes one line on stderr and a
non-zero exit (bpftools/errors.py); FSTRACE_DEBUG=1 shows the traceback.
"""
from __future__ import annotations

import os
import re
import sys
import time

import click

from bpftools import __version__

from bpftools import abi
from bpftools.errors import FstraceError, UsageError
from bpftools.kernel.probe import BACKENDS

DURATION_UNITS = {"": 1, "s": 1, "ms": 0.001, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|)\s*", text)
    if not m:
        raise UsageError("bad duration %r: use seconds or a unit, e.g. 30, 30s, 500ms, 2m, 1h" % text)
    return float(m.group(1)) * DURATION_UNITS[m.group(2)]


def parse_pids(values) -> tuple[int, ...]:
    pids = []
    for value in values:
        for item in value.split(","):
            if not item.strip().isdigit():
                raise UsageError("bad --pid %r: give process ids, e.g. --pid 42,43" % item)
            pids.append(int(item))
    return tuple(pids)


def parse_event_option(value: str | None, default=abi.DEFAULT_EVENTS) -> tuple[str, ...]:
    if value is None:
        return default
    try:
        return abi.parse_events(value)
    except ValueError as e:
        raise UsageError(str(e)) from None


EPILOG_TRACE = """\b
Examples:
  fstrace trace                          every file event (but reads and writes)
  fstrace trace --json | jq .path        JSON Lines
  fstrace trace -e create,delete,rename --cgroup system.slice
  fstrace trace -e all -- make -j2       a command and all it starts, with reads/writes
  fstrace trace --failed -c nginx        include failed attempts of nginx
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fstrace")
def cli():
    """Which service or container is doing this to my filesystem?

    fstrace traces file activity with eBPF and names every event's cgroup
    (systemd unit, container, pod).  It needs root.
    """


@cli.command(epilog=EPILOG_TRACE)
@click.option("--json", "as_json", is_flag=True, help="Write JSON Lines (start, event, cgroup, lost, summary).")
@click.option("-d", "--duration", metavar="TIME", help="Stop after TIME (30, 30s, 500ms, 2m, 1h).")
@click.option("-p", "--pid", "pids", multiple=True, metavar="PID[,PID…]", help="Only these processes.")
@click.option("-c", "--comm", "comms", multiple=True, metavar="NAME", help="Only processes with this name.")
@click.option("-e", "--event", "event_spec", metavar="LIST",
              help="Events to trace, comma-separated: %s, 'default' (all but access,modify) or 'all'."
                   % ",".join(abi.EVENT_NAMES))
@click.option("--cgroup", "cgroups", multiple=True, metavar="CGROUP",
              help="Only this cgroup subtree: an id, a path (system.slice/nginx.service) or a glob "
                   "('system.slice/*.service', followed as new matches appear).")
@click.option("--failed", is_flag=True, help="Also show operations that failed (with their errno).")
@click.option("--backend", type=click.Choice(("auto",) + BACKENDS), default="auto", show_default=True,
              help="Where to hook the kernel: fsnotify() as fentry or kprobe, or the syscall tracepoints; "
                   "auto takes the first that works here and says why not the others.")
@click.option("--mount", "mounts", multiple=True, metavar="PATH",
              help="fentry/kprobe: trace only the filesystem PATH is on (repeatable; default: every real "
                   "filesystem, new mounts included).")
@click.option("--dump-bpf", is_flag=True, hidden=True, help="Print the BPF program and its flags, then exit.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- CMD ARGS…]")
def trace(as_json, duration, pids, comms, event_spec, cgroups, failed, backend, mounts, dump_bpf, command):
    """Print file events as they happen, one per line.

    With -- CMD, run CMD in a new cgroup, trace only it and everything it
    starts, and exit with its status once the cgroup is empty.  Reads
    (access) and writes (modify) are left out unless asked for with -e.
    """
    from bpftools.session import Options, Session

    opts = Options(
        backend=backend, events=parse_event_option(event_spec), failed=failed, pids=parse_pids(pids),
        comms=tuple(comms), cgroups=tuple(cgroups),
        duration=parse_duration(duration) if duration else None, command=tuple(command),
        mounts=tuple(mounts),
    )
    if dump_bpf:
        from bpftools.kernel import btf
        from bpftools.kernel import probe
        shown = BACKENDS[0] if backend == "auto" else backend
        cfg = probe.ProbeConfig(events=opts.events, failed=failed, pids=opts.pids, comms=opts.comms,
                                cgroup_filter=bool(cgroups or command))
        flags = probe.cflags(cfg, os.getpid(), "bpf")
        if shown in probe.FSNOTIFY_BACKENDS:
            flags += probe.fsnotify_cflags(shown, btf.Btf.load())
        click.echo("// backend %s; cflags: %s" % (shown, " ".join(flags)))
        click.echo(probe.bpf_text(probe.program_parts(shown)))
        return
    out = sys.stdout.buffer
    if as_json:
        from bpftools.views.jsonl import JsonSink
        sink = JsonSink(out)
    else:
        from bpftools.views.text import TextSink
        sink = TextSink(out, sys.stderr, colour=sys.stdout.isatty() and "NO_COLOR" not in os.environ)
    session = Session(opts, sink)
    status = 0
    try:
        info = session.start()
        sink.start(info, time.time(), os.getpid())
        sink.flush()
        status = session.run()
        sink.summary(time.time(), session.totals, info.backend, session.duration)
        sink.flush()
    except BrokenPipeError:
        # the reader went away (| head): end quietly, like any filter
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        session.close()
    sys.exit(status)


from bpftools.cli.counting import report, top  # noqa: E402  (it uses the helpers above)

from bpftools.cli.cgroups import cgroups_command  # noqa: E402

cli.add_command(cgroups_command)
cli.add_command(top)
cli.add_command(report)
from bpftools.cli.export import export_command  # noqa: E402
cli.add_command(export_command)


def main(argv=None) -> None:
    try:
        cli.main(args=argv, prog_name="fstrace", standalone_mode=False)
    except FstraceError as e:
        _fail(str(e), e.exit_code, e)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:
        _fail(e.format_message(), e.exit_code, e)
    except KeyboardInterrupt:
        sys.exit(130)


def _fail(message: str, code: int, exc: BaseException) -> None:
    if os.environ.get("FSTRACE_DEBUG") == "1":
        import traceback
        traceback.print_exception(exc)
    sys.stderr.write("fstrace: error: %s\n" % message)
    sys.exit(code)
