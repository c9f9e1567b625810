"""What every command's options mean: the shared filter options and their parsers, declared once."""
from __future__ import annotations

import os
import re
import sys

import click

from bpftools import abi
from bpftools.errors import UsageError
from bpftools.kernel.backends import NAMES as BACKEND_NAMES
from bpftools.session.contract import Options
from bpftools.session.paths import normalize

DURATION_UNITS = {"": 1, "s": 1, "ms": 0.001, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|)\s*", text)
    if not m:
        raise UsageError("bad duration %r: use seconds or a unit, e.g. 30, 30s, 500ms, 2m, 1h" % text)
    return float(m.group(1)) * DURATION_UNITS[m.group(2)]


TIME_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def parse_slower_than(text: str) -> int:
    """--slower-than TIME (10ms, 250us, 1s, 1.5ms) -> ns; a unit is required, and the time must be > 0."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s)\s*", text)
    ns = round(float(m.group(1)) * TIME_UNITS[m.group(2)]) if m else 0
    if ns <= 0:
        raise UsageError("bad --slower-than %r: give a time above 0 with a unit, e.g. 10ms, 250us, 1s" % text)
    return ns


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


def parse_prefixes(values) -> tuple[str, ...]:
    out = []
    for v in values:
        if not v.startswith("/"):
            raise UsageError("bad --path %r: give an absolute path, e.g. --path /srv" % v)
        out.append(normalize(v.encode()).decode())
    return tuple(out)


def parse_pods(values) -> tuple[str, ...]:
    """--pod NAMESPACE/NAME, NAME (any namespace) or a pod uid."""
    for v in values:
        namespace, slash, name = v.rpartition("/")
        if not name or (slash and not namespace) or namespace.count("/"):
            raise UsageError("bad --pod %r: give NAMESPACE/NAME, NAME or a pod uid, e.g. --pod shop/checkout-7d9c"
                             % v)
    return tuple(values)


def parse_containers(values) -> tuple[str, ...]:
    for v in values:
        if not v.strip():
            raise UsageError("bad --container %r: give a name, runtime:short-id or an id prefix, e.g. "
                             "--container web-1" % v)
    return tuple(values)


def filter_words(pids, comms, event_spec, cgroups, path_prefixes=(), containers=(), pods=()) -> tuple[str, ...]:
    """The active filters as headers and reports show them."""
    words = []
    words += ["--pid %s" % ",".join(map(str, pids))] if pids else []
    words += ["--comm %s" % c for c in comms]
    words += ["-e %s" % event_spec] if event_spec else []
    words += ["--cgroup %s" % c for c in cgroups]
    words += ["--container %s" % c for c in containers]
    words += ["--pod %s" % p for p in pods]
    words += ["--path %s" % p for p in path_prefixes]
    return tuple(words)


class RunsCommand(click.Command):
    """A command that may run `-- CMD`: a `--` with nothing after it is a usage error, not "everything"."""

    def parse_args(self, ctx, args):
        if args and args[-1] == "--" and "--" not in args[:-1]:
            raise UsageError("nothing after --: give the command to run, e.g. fstrace %s -- make -j2" % self.name)
        return super().parse_args(ctx, args)


def output_option(what: str):
    return click.option("-o", "--output", "output", metavar="FILE",
                        help="Write %s to FILE instead of standard output (the command's own output stays "
                             "there); FILE is created or truncated before anything starts." % what)


def open_output(path: str | None, binary: bool, command=()):
    """The -o FILE stream, opened now so that a bad FILE fails before counting; stdout without -o (or -o -).

    A -- CMD that cannot run is refused first, so that it leaves no empty FILE behind.
    """
    if command:
        from bpftools.session.command import check
        check(command)
    if path is None or path == "-":
        return sys.stdout.buffer if binary else sys.stdout
    if os.path.isdir(path):
        raise UsageError("cannot write -o %s: it is a directory" % path)
    try:
        if binary:
            return open(path, "wb")
        return open(path, "w", encoding="utf-8", errors="surrogateescape")
    except OSError as e:
        raise UsageError("cannot write -o %s: %s" % (path, e.strerror)) from None


def _decorate(f, decorators):
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def _pid_comm():
    return (
        click.option("-p", "--pid", "pids", multiple=True, metavar="PID[,PID…]", help="Only these processes."),
        click.option("-c", "--comm", "comms", multiple=True, metavar="NAME", help="Only processes with this name."),
    )


def _names():
    return (
        click.option("--container", "containers", multiple=True, metavar="NAME",
                     help="Only this container: its name (web-1), runtime:short-id or an id prefix; read from "
                          "the runtime's state, decided in user space (repeatable; with --cgroup, both must match)."),
        click.option("--pod", "pods", multiple=True, metavar="NS/NAME",
                     help="Only this Kubernetes pod: NAMESPACE/NAME, NAME or its uid (repeatable; as --container)."),
    )


def trace_filters(f):
    """The filters of `trace`: what reaches the output, decided in the kernel."""
    return _decorate(f, _pid_comm() + (
        click.option("-e", "--event", "event_spec", metavar="LIST",
                     help="Events to trace, comma-separated: %s, 'default' (all but access,modify) or 'all'."
                          % ",".join(abi.EVENT_NAMES)),
        click.option("--cgroup", "cgroups", multiple=True, metavar="CGROUP",
                     help="Only this cgroup subtree: an id, a path (system.slice/nginx.service) or a glob "
                          "('system.slice/*.service', followed as new matches appear)."),
    ) + _names() + (
        click.option("--failed", is_flag=True, help="Also show operations that failed (with their errno)."),
        click.option("--backend", type=click.Choice(("auto",) + BACKEND_NAMES), default="auto", show_default=True,
                     help="Where to hook the kernel: fsnotify() as fentry or kprobe, or the syscall tracepoints; "
                          "auto takes the first that works here and says why not the others."),
        click.option("--mount", "mounts", multiple=True, metavar="PATH",
                     help="fentry/kprobe: trace only the filesystem PATH is on (repeatable; default: every real "
                          "filesystem, new mounts included)."),
    ))


def count_filters(f):
    """The filters of the commands that count (top, report, export)."""
    return _decorate(f, _pid_comm() + (
        click.option("-e", "--event", "event_spec", metavar="LIST",
                     help="Events to count, comma-separated: %s, 'default' or 'all' (the default)."
                          % ",".join(abi.EVENT_NAMES)),
        click.option("--cgroup", "cgroups", multiple=True, metavar="CGROUP",
                     help="Only this cgroup subtree: an id, a path or a glob (as in trace)."),
    ) + _names() + (
        click.option("--path", "path_prefixes", multiple=True, metavar="PREFIX",
                     help="Only files under this absolute path (decided in user space, on resolved paths)."),
        click.option("--backend", type=click.Choice(("auto",) + BACKEND_NAMES), default="auto", show_default=True,
                     help="Where to hook the kernel (as in trace)."),
        click.option("--mount", "mounts", multiple=True, metavar="PATH",
                     help="fentry/kprobe: count only on the filesystem PATH is on (as in trace)."),
    ))


def session_options(pids, comms, event_spec, cgroups, backend, mounts, failed: bool, *, aggregate: bool,
                    path_prefixes=(), duration=None, command=(), containers=(), pods=(),
                    slower_than: str | None = None) -> Options:
    """The session's Options from the filter options; counting takes every event unless -e says otherwise,
    and so does trace --slower-than (only timed events can be slow: those of abi.TIMED_EVENTS)."""
    slower = parse_slower_than(slower_than) if slower_than is not None else None
    every = aggregate or slower is not None
    return Options(
        slower_than_ns=slower,
        backend=backend, events=parse_event_option(event_spec, abi.EVENT_NAMES if every else abi.DEFAULT_EVENTS),
        failed=failed, pids=parse_pids(pids), comms=tuple(comms), cgroups=tuple(cgroups),
        duration=parse_duration(duration) if duration else None, command=tuple(command),
        mounts=tuple(mounts), aggregate=aggregate, path_prefixes=parse_prefixes(path_prefixes),
        containers=parse_containers(containers), pods=parse_pods(pods),
    )
