"""`fstrace report --from FILE` and `fstrace report --diff BEFORE AFTER`: reports from saved files, no kernel.

Called by the report command (cli/counting.py) when one of the two is given;
no root needed.  --from replays a saved trace through the report's own sink
(session/tracefile.py); --diff compares two reports or traces (model/diff.py,
views/diff.py).
"""
from __future__ import annotations

import signal
import sys

import click

from bpftools.cgroups.select import split_specs
from bpftools.cli.app import write_output, write_report
from bpftools.cli.options import filter_words, parse_event_option, parse_pids, parse_prefixes
from bpftools.errors import UsageError
from bpftools.model import diff as md
from bpftools.session.tracefile import ReplayFilter, load_side, open_input, replay
from bpftools.views import diff as diff_view
from bpftools.views import report as report_view

# report options that mean nothing without the kernel, and those that mean nothing for a diff
LIVE_ONLY = ("duration", "backend", "mounts", "command")
NOT_FOR_DIFF = LIVE_ONLY + ("by", "sort", "csv_dir", "pids", "comms", "event_spec", "cgroups", "path_prefixes",
                            "source", "containers", "pods")
OPTION_NAMES = {"duration": "-d/--duration", "backend": "--backend", "mounts": "--mount", "command": "-- CMD",
                "by": "--by", "sort": "--sort", "csv_dir": "--csv", "pids": "--pid", "comms": "--comm",
                "event_spec": "-e/--event", "cgroups": "--cgroup", "path_prefixes": "--path", "source": "--from",
                "maps": "--map", "containers": "--container", "pods": "--pod"}


def given(ctx: click.Context, name: str) -> bool:
    """Did the user give this option (rather than click filling in its default)?"""
    source = ctx.get_parameter_source(name)
    return source is not None and source != click.core.ParameterSource.DEFAULT


def refuse(ctx: click.Context, names, mode: str) -> None:
    for name in names:
        if given(ctx, name):
            raise UsageError("%s does not go with %s" % (OPTION_NAMES[name], mode))


def warn(lines) -> None:
    for line in lines:
        sys.stderr.write("fstrace: warning: %s\n" % line)
    sys.stderr.flush()


class _PipeInterrupt:
    """SIGINT while reading a pipe: `trace --json | report --from -` gets Ctrl-C on both ends.

    The first one lets the writer finish (its summary record, then the end of
    the input, follows); a second one stops reading here.  Either way the
    report of what was read is written.
    """

    def __init__(self):
        self.seen = False

    def __call__(self, signum, frame):
        if self.seen:
            raise KeyboardInterrupt
        self.seen = True
        sys.stderr.write("fstrace: reading to the end of the input (Ctrl-C again: stop here and report)\n")
        sys.stderr.flush()


def report_from(ctx: click.Context, source: str, *, top_n, tables, sort, as_json, out, csv_dir, svg_file, html_file,
                pids, comms, event_spec, cgroups, path_prefixes) -> None:
    """The report of a saved trace, in every format the live report has."""
    refuse(ctx, LIVE_ONLY + ("maps",), "--from (a saved trace has no kernel to ask)")
    refuse(ctx, ("containers", "pods"), "--from (not yet: select with --cgroup)")
    paths, ids, globs = split_specs(cgroups, None)
    asked = parse_event_option(event_spec, default=None) if event_spec else None
    filters = ReplayFilter(events=asked, pids=parse_pids(pids), comms=tuple(comms), cgroup_paths=tuple(paths),
                           cgroup_ids=tuple(ids), cgroup_globs=tuple(globs),
                           path_prefixes=parse_prefixes(path_prefixes))
    sink = report_view.ReportSink()
    stream = open_input(source)
    old = signal.signal(signal.SIGINT, _PipeInterrupt()) if source == "-" else None
    try:
        info = replay(stream, source, sink, filters)
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)
        if source != "-":
            stream.close()
    warn(info.warnings)
    meta = report_view.ReportMeta(backend=info.backend, kernel=info.kernel, command=info.command,
                                  command_cgroup=info.command_cgroup,
                                  exit_status=info.exit_status if info.command else None,
                                  filters=info.filters + filter_words(pids, comms, event_spec, cgroups,
                                                                      path_prefixes),
                                  source=info.source_record(asked), notes=tuple(info.not_recorded(asked)),
                                  bytes=info.bytes is True, latency=info.latency is True)
    rep = report_view.build(sink.agg, meta, top=top_n, by=tables, sort=sort)
    write_report(rep, out, as_json, csv_dir, svg_file, html_file)


def report_diff(ctx: click.Context, before: str, after: str, *, maps, top_n, as_json, out, svg_file,
                html_file) -> None:
    """Two reports or traces compared; tables, JSON, SVG, HTML."""
    refuse(ctx, NOT_FOR_DIFF, "--diff (it compares two finished reports; filter when making them)")
    if before == "-" and after == "-":
        raise UsageError("--diff - -: only one side can come from standard input")
    try:
        path_maps = tuple(md.parse_map(m) for m in maps)
    except ValueError as e:
        raise UsageError(str(e)) from None
    sides = []
    for name in (before, after):
        side, warnings = load_side(name)
        warn(warnings)
        sides.append(side)
    d = md.diff(sides[0], sides[1], path_maps)
    top = top_n if given(ctx, "top_n") else None        # unless given: every row in JSON, 10 in tables
    shown = diff_view.DEFAULT_TOP if top is None else top
    write_output(out, as_json, lambda f: diff_view.write_json(d, f, top or 0),
                 lambda console: diff_view.print_diff(d, console, shown),
                 ((svg_file, lambda: diff_view.to_svg(d, shown)), (html_file, lambda: diff_view.to_html(d, shown))))
