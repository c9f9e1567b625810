"""`fstrace cgroups`: the cgroup id -> path map, once or as a live stream.

A snapshot needs no BPF: a sweep of the cgroup2 mount (and fanotify, to say
whether it works here).  --watch adds the cgroup_mkdir/rmdir tracepoints
through the ring buffer, so cgroups that live for a millisecond are reported
with their path; fanotify reports what the tracepoints cannot (an older
kernel, no tracepoint permission) and the map reports each change once.
"""
from __future__ import annotations

import json
import os
import sys
import time

import click

from bpftools.cgroups import map as cgroup_map
from bpftools.cgroups.runtimes import runtime_names, with_runtime
from bpftools.cli.app import run_session
from bpftools.cli.options import parse_duration
from bpftools.errors import FstraceError, MissingKernelFeature
from bpftools.escape import terminal_safe
from bpftools.kernel import backends
from bpftools.session.contract import Options
from bpftools.views.cgroups import WatchSink, owner

EPILOG = """\b
Examples:
  fstrace cgroups                        every cgroup with its unit or container
  fstrace cgroups --json | jq '.cgroups[] | select(.container)'
  fstrace cgroups --watch                cgroups as they are created and removed
  fstrace cgroups --watch --json -d 1m
"""


def _mount() -> str:
    try:
        return cgroup_map.cgroup2_mount()
    except cgroup_map.Cgroup2Unavailable as e:
        raise MissingKernelFeature("cgroup2", str(e)) from None


def entry_record(info, now: float, mount: str) -> dict:
    names = with_runtime(info.names)
    age = None
    if info.alive:
        try:
            age = round(now - os.stat(os.path.join(mount, info.path.lstrip("/"))).st_ctime, 3)
        except OSError:
            pass
    return {"id": info.id, "path": info.path, "unit": names.unit, "slice": names.slice,
            "container": names.container, "pod": names.pod, **runtime_names(names), "alive": info.alive,
            "age_s": age}


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return "%d%s" % (seconds // size, unit)
    return "%ds" % seconds


def snapshot_lines(recs: list[dict], sources: dict[str, str]) -> list[str]:
    """The plain table: one line per cgroup, the sources first."""
    lines = ["# sources: " + ", ".join("%s %s" % kv for kv in sources.items())]
    width = max((len(r["path"]) for r in recs), default=4)
    lines.append("%10s  %-*s  %-28s  %-7s  %s" % ("ID", width, "PATH", "UNIT/CONTAINER (IMAGE)", "STATE", "AGE"))
    for r in recs:
        lines.append(terminal_safe("%10d  %-*s  %-28s  %-7s  %s" % (
            r["id"], width, r["path"], owner(r), "alive" if r["alive"] else "removed", format_age(r["age_s"]))))
    return lines


@click.command("cgroups", epilog=EPILOG)
@click.option("--json", "as_json", is_flag=True, help="One JSON document; with --watch, JSON Lines.")
@click.option("-w", "--watch", is_flag=True, help="Stream cgroup creation and removal as it happens.")
@click.option("-d", "--duration", metavar="TIME", help="With --watch: stop after TIME (30s, 2m, …).")
def cgroups_command(as_json, watch, duration):
    """List the cgroup id -> path map, or watch it change.

    Ids are what bpf_get_current_cgroup_id() returns, paths are relative to
    the cgroup2 root; units and containers are derived from the path.
    """
    mount = _mount()
    limit = parse_duration(duration) if duration else None
    if watch:
        # the loop every command runs, with no file backend: only the cgroup tracepoints (and
        # fanotify and the sweep) feed the map, which reports each change once, in order
        run_session(Options(backend=backends.CGROUPS_ONLY.name, duration=limit), WatchSink(sys.stdout, as_json, mount))
        return
    with cgroup_map.CgroupMap(mount=mount, sources=("sweep", "fanotify")) as cgmap:
        now = time.time()
        recs = sorted((entry_record(i, now, mount) for i in cgmap.entries()), key=lambda r: r["path"])
        sources = cgmap.sources
    sources["tracepoint"] = _tracepoint_state()
    if as_json:
        click.echo(json.dumps({"mount": mount, "sources": sources, "cgroups": recs}, ensure_ascii=False))
    else:
        click.echo("\n".join(snapshot_lines(recs, sources)))


def _tracepoint_state() -> str:
    """Whether --watch and trace can use the cgroup tracepoints; the listing never depends on it."""
    try:
        tdir = backends.tracefs()
    except FstraceError as e:
        return "unknown: %s" % e
    if all(backends.tracepoint_exists(tdir, tp) for tp in backends.CGROUP_TRACEPOINTS):
        return "available (used by --watch and trace)"
    return "off: no cgroup tracepoints on this kernel"

