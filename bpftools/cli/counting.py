"""`fstrace top` and `fstrace report`: the commands that count in the kernel.

Thin click commands: options -> session Options + view state, then the
session drives a sink from bpftools/views/top.py or views/report.py.
"""
from __future__ import annotations

import os
import sys

import click

from bpftools import model
from bpftools.cli.app import PipeConsole, batch_width, run_session, say, write_report
from bpftools.cli.options import RunsCommand, count_filters, filter_words, open_output, output_option, session_options
from bpftools.errors import UsageError
from bpftools.model.fields import FIELDS
from bpftools.views.report import TABLES

# the columns and sort keys, from the field table (man fstrace: FIELDS)
FIELDS_HELP = "\b\nColumns (sort key in brackets where it differs):\n" + "".join(
    "  %-20s %s\n" % (f.column + ("" if f.column == f.name else " [%s]" % f.name), f.help) for f in FIELDS)

EPILOG_TOP = FIELDS_HELP + """
\b
Examples:
  fstrace top                            live view, by cgroup (press ? for keys)
  fstrace top -g file --cgroup system.slice/nginx.service
  fstrace top -g file -s write_bytes     the files written the most, in bytes
  fstrace top -g process -s time_us      the processes whose I/O takes the most time
  fstrace top -b -n 3                    three plain tables, one per second
  fstrace top -g comm -a                 per command name, running totals (iotop -a)
  fstrace top --json -n 10 | jq .total   one JSON document per tick
"""

EPILOG_REPORT = FIELDS_HELP + """
\b
Examples:
  fstrace report -d 30s                  what the whole machine did in 30 s
  fstrace report -- make -j2             everything make and its children did
  fstrace report --json -o job.json -- ./job.sh   one JSON document (schema: man fstrace)
  fstrace report -d 1m --html r.html --csv r/   a picture for a ticket, CSVs
  fstrace report --from t.jsonl          the report of a saved `trace --json`
  fstrace report --by latency,slowest -- ./job.sh   p50/p99/max, histograms, slowest files
  fstrace report --diff a.json b.json    what changed between two runs
"""


def say_skipped(info) -> None:
    """What the probe left out and what that costs, one line each (as trace's text header does)."""
    for what, why in info.skipped.items():
        say("skipped %s: %s" % (what, why))


@click.command(epilog=EPILOG_TOP)
@click.option("-i", "--interval", type=float, default=1.0, show_default=True, metavar="SECONDS",
              help="Seconds between refreshes.")
@click.option("-g", "--group", type=click.Choice(model.GROUPINGS), default="cgroup", show_default=True,
              help="Rows per cgroup (a tree, counts rolled up), process, file or event type.")
@click.option("-s", "--sort", type=click.Choice(model.SORT_KEYS), default=model.DEFAULT_SORT, show_default=True,
              help="Sort column.")
@click.option("-r", "--reverse", is_flag=True, help="Smallest first (names: Z to A).")
@click.option("-a", "--accumulate", is_flag=True,
              help="Running totals since the start (or since `a` was pressed) instead of rates per tick.")
@click.option("-b", "--batch", is_flag=True, help="Plain tables, one per tick (also when stdout is not a terminal).")
@click.option("-n", "--iterations", type=click.IntRange(min=1), metavar="N", help="Stop after N ticks.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document per tick (implies -b).")
@click.option("--failed", is_flag=True, help="Also count operations that failed (a fail column; -s failed "
                                               "implies it).")
@count_filters
def top(interval, group, sort, reverse, accumulate, batch, iterations, as_json, failed, pids, comms, event_spec,
        cgroups, containers, pods, path_prefixes, backend, mounts):
    """A live view of file activity per cgroup, process, file or event type.

    Counts are kept in the kernel and read once per tick, so they are exact
    at any event rate.  Keys: ? shows them all; < > sort, r reverses, g
    groups (1-5), a toggles running totals, Enter drills in, / filters, p
    pauses, + - change the interval, q quits.  On a terminal that cannot
    draw a live view (TERM=dumb) it prints plain tables, as -b does.
    """
    from bpftools.views import top as view

    if interval <= 0:
        raise UsageError("bad --interval %g: give a positive number of seconds" % interval)
    failed = failed or sort == "failed"     # the sort column is always shown
    opts = session_options(pids, comms, event_spec, cgroups, backend, mounts, failed, aggregate=True,
                           path_prefixes=path_prefixes, containers=containers, pods=pods)
    state = view.ViewState(group=group, sort=sort, reverse=reverse, interval=interval, failed=failed,
                           accumulate=accumulate)
    meta = view.Meta(filters=filter_words(pids, comms, event_spec, cgroups, path_prefixes, containers, pods))
    keys_fd = _terminal_fd()
    announce = None
    dumb = os.environ.get("TERM", "") in ("dumb", "unknown", "")
    if dumb and not (batch or as_json) and keys_fd is not None and sys.stdout.isatty():
        say("TERM=%s cannot draw the live view: plain tables instead (as with -b)" % os.environ.get("TERM", ""))
    if batch or as_json or keys_fd is None or not sys.stdout.isatty() or dumb:
        console = PipeConsole(width=batch_width(), no_color="NO_COLOR" in os.environ or not sys.stdout.isatty(),
                          highlight=False)
        sink = view.Batch(console, state, meta, iterations, as_json, out=sys.stdout)

        def announce(info):
            say("counting with the %s backend on kernel %s, a table every %gs" % (info.backend, info.kernel, interval))
            say_skipped(info)
    else:
        sink = view.Interactive(PipeConsole(highlight=False), state, meta, keys_fd, iterations)
    run_session(opts, sink, announce)


def _terminal_fd() -> int | None:
    """The terminal to read keys from: stdin when it is one."""
    return sys.stdin.fileno() if sys.stdin.isatty() else None


@click.command(cls=RunsCommand, epilog=EPILOG_REPORT)
@click.option("-d", "--duration", metavar="TIME", help="Count for TIME (30, 30s, 2m); default: until Ctrl-C "
                                                       "or until CMD and all it started have ended.")
@click.option("--top", "top_n", type=click.IntRange(min=0), default=10, show_default=True, metavar="N",
              help="Rows per table (0: all), in every format (--diff --json: every row unless given).")
@click.option("--by", "by", metavar="LIST",
              help="Tables to show, comma-separated: %s (default: all)." % ",".join(("all",) + TABLES))
@click.option("-s", "--sort", type=click.Choice(model.SORT_KEYS), default=model.DEFAULT_SORT, show_default=True,
              help="Sort column of the tables.")
@click.option("--json", "as_json", is_flag=True, help="Write one JSON document instead of tables.")
@output_option("the report (tables or JSON)")
@click.option("--csv", "csv_dir", metavar="DIR", help="Also write one CSV file per table into DIR.")
@click.option("--svg", "svg_file", metavar="FILE", help="Also write the report as a self-contained SVG picture.")
@click.option("--html", "html_file", metavar="FILE", help="Also write the report as a self-contained HTML page.")
@click.option("--from", "source", metavar="FILE",
              help="Report on a saved `trace --json` file (- for stdin) instead of the kernel; no root needed.")
@click.option("--diff", "diff", nargs=2, metavar="BEFORE AFTER",
              help="Compare two runs, each a `report --json` document or a `trace --json` file: what is new, "
                   "vanished and changed per cgroup, process name and file.")
@click.option("--map", "maps", multiple=True, metavar="OLD=NEW",
              help="With --diff: read BEFORE's paths under OLD as under NEW (a glob in OLD renames both "
                   "sides), for per-run temporary directories.")
@count_filters
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- CMD ARGS…]")
@click.pass_context
def report(ctx, duration, top_n, by, sort, as_json, output, csv_dir, svg_file, html_file, source, diff, maps, pids,
           comms, event_spec, cgroups, containers, pods, path_prefixes, backend, mounts, command):
    """Count file activity over a time or a command, then summarise it.

    With -- CMD, run CMD in a new cgroup (a transient scope on a systemd
    host), count everything it and all its descendants do (daemons
    included) until the cgroup is empty, and exit with CMD's status.  Failed operations are always counted (by errno).

    With --from, summarise a saved trace instead; with --diff, compare two
    runs.  Neither needs root.
    """
    from bpftools.cli import saved
    from bpftools.views import report as view

    tables = parse_tables(by)
    check_writable(svg_file, "file")
    check_writable(html_file, "file")
    check_writable(csv_dir, "directory")
    if diff:
        return saved.report_diff(ctx, diff[0], diff[1], maps=maps, top_n=top_n, as_json=as_json,
                                 out=open_output(output, binary=False), svg_file=svg_file, html_file=html_file)
    if source is not None:
        return saved.report_from(ctx, source, top_n=top_n, tables=tables, sort=sort, as_json=as_json,
                                 out=open_output(output, binary=False), csv_dir=csv_dir, svg_file=svg_file,
                                 html_file=html_file, pids=pids, comms=comms, event_spec=event_spec,
                                 cgroups=cgroups, path_prefixes=path_prefixes)
    if maps:
        raise UsageError("--map goes with --diff")
    out = open_output(output, binary=False, command=command)
    opts = session_options(pids, comms, event_spec, cgroups, backend, mounts, failed=True, aggregate=True,
                           path_prefixes=path_prefixes, duration=duration, command=command,
                           containers=containers, pods=pods)
    sink = view.ReportSink()

    def announce(info):
        until = ("when %s and all it started have ended" % command[0] if command
                 else "after %gs" % opts.duration if duration else "at Ctrl-C")
        say("counting with the %s backend on kernel %s; the report comes %s" % (info.backend, info.kernel, until))
        say_skipped(info)
    info, status = run_session(opts, sink, announce)
    if info is None:            # the reader went away before counting began
        sys.exit(status)
    meta = view.ReportMeta(backend=info.backend, kernel=info.kernel, command=tuple(command),
                           command_cgroup=info.command_cgroup, exit_status=status if command else None,
                           filters=filter_words(pids, comms, event_spec, cgroups, path_prefixes, containers, pods),
                           bytes=info.bytes, latency=info.latency)
    rep = view.build(sink.agg, meta, top=top_n, by=tables, sort=sort)
    write_report(rep, out, as_json, csv_dir, svg_file, html_file)
    sys.exit(status)


def parse_tables(spec: str | None) -> tuple[str, ...]:
    if not spec:
        return TABLES
    out: list[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if item == "all":
            out += [t for t in TABLES if t not in out]
        elif item in TABLES:
            out += [item] if item not in out else []
        else:
            raise UsageError("unknown table %r for --by; known: %s, all" % (item, ", ".join(TABLES)))
    return tuple(out)


def check_writable(path: str | None, what: str) -> None:
    """Fail before counting, not after, when an output cannot be written."""
    if path is None:
        return
    if what == "directory" and os.path.exists(path) and not os.path.isdir(path):
        raise UsageError("cannot write CSV files into %s: it exists and is not a directory" % path)
    if what == "file" and os.path.isdir(path):
        raise UsageError("cannot write %s %s: it is a directory" % (what, path))
    if what == "file" and os.path.exists(path) and not os.access(path, os.W_OK):
        raise UsageError("cannot write %s %s: permission denied" % (what, path))
    where = path if what == "directory" and os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(where) or not os.access(where, os.W_OK):
        raise UsageError("cannot write %s %s: %s is not a writable directory" % (what, path, where))
