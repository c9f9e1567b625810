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
import signal
import sys
import time

import click

from bpftools import abi
from bpftools.cgroups import map as cgroup_map
from bpftools.cgroups.names import names_from_path
from bpftools.cli.options import parse_duration
from bpftools.errors import MissingKernelFeature
from bpftools.escape import terminal_safe

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
    names = info.names
    age = None
    if info.alive:
        try:
            age = round(now - os.stat(os.path.join(mount, info.path.lstrip("/"))).st_ctime, 3)
        except OSError:
            pass
    return {"id": info.id, "path": info.path, "unit": names.unit, "slice": names.slice,
            "container": names.container, "pod": names.pod, "alive": info.alive, "age_s": age}


def change_record(change, wall_offset: float) -> dict:
    names = names_from_path(change.path)
    return {"type": "cgroup", "action": change.action, "ts": round(wall_offset + change.ts, 6), "id": change.id,
            "path": change.path, "unit": names.unit, "container": names.container, "pod": names.pod,
            "source": change.source}


def owner(rec: dict) -> str:
    return rec["container"] or rec["unit"] or ""


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
    lines.append("%10s  %-*s  %-28s  %-7s  %s" % ("ID", width, "PATH", "UNIT/CONTAINER", "STATE", "AGE"))
    for r in recs:
        lines.append(terminal_safe("%10d  %-*s  %-28s  %-7s  %s" % (
            r["id"], width, r["path"], owner(r), "alive" if r["alive"] else "removed", format_age(r["age_s"]))))
    return lines


def change_line(rec: dict) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(rec["ts"])) + ".%06d" % int(rec["ts"] % 1 * 1e6)
    who = owner(rec)
    return terminal_safe("%s %-5s %10d %s%s" % (stamp, rec["action"], rec["id"], rec["path"],
                                                 "  (%s)" % who if who else ""))


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
        sys.exit(_watch(mount, as_json, limit))
    with cgroup_map.CgroupMap(mount=mount, sources=("sweep", "fanotify")) as cgmap:
        now = time.time()
        recs = sorted((entry_record(i, now, mount) for i in cgmap.entries()), key=lambda r: r["path"])
        sources = cgmap.sources
    from bpftools.kernel import probe
    sources["tracepoint"] = ("available (used by --watch and trace)"
                             if all(probe.tracepoint_exists(probe.tracefs(), tp) for tp in probe.CGROUP_TRACEPOINTS)
                             else "off: no cgroup tracepoints on this kernel")
    if as_json:
        click.echo(json.dumps({"mount": mount, "sources": sources, "cgroups": recs}, ensure_ascii=False))
    else:
        click.echo("\n".join(snapshot_lines(recs, sources)))


def _watch(mount: str, as_json: bool, limit: float | None) -> int:
    from bpftools.kernel import probe

    offset = time.time() - time.monotonic()
    out = sys.stdout
    cgmap = None

    def emit(changes):
        for change in changes:
            rec = change_record(change, offset)
            out.write((json.dumps(rec, ensure_ascii=False) if as_json else change_line(rec)) + "\n")

    def on_record(data):
        rec = abi.decode(data)
        if rec.type == abi.REC_CGROUP:
            path = os.fsdecode(rec.name1 or b"")      # as the sweep and fanotify spell it
            emit(cgmap.feed(abi.CG_ACTIONS[rec.op], rec.cgroup_id, path, rec.ts_ns / 1e9))

    p = probe.Probe(probe.ProbeConfig(backend=probe.CGROUPS_ONLY), on_record)
    # The tracepoints report every change, in order, with its path; fanotify,
    # which reports a short-lived cgroup only once it is gone, stands in for
    # them where they are missing.  Records sent before the sweep are
    # reported once: the map drops a mkdir it already holds.
    if "cgroup/cgroup_mkdir" in p.report.skipped:
        cgmap = cgroup_map.CgroupMap(mount=mount, sources=("sweep", "fanotify"))
        cgmap.disable("tracepoint", p.report.skipped["cgroup/cgroup_mkdir"])
    else:
        cgmap = cgroup_map.CgroupMap(mount=mount, sources=("sweep", "tracepoint"))
    stop = []
    old = {s: signal.signal(s, lambda *_: stop.append(1)) for s in (signal.SIGINT, signal.SIGTERM)}
    started = time.monotonic()
    try:
        if as_json:
            out.write(json.dumps({"type": "start", "ts": round(time.time(), 6), "mount": mount,
                                  "sources": cgmap.sources}) + "\n")
        else:
            sys.stderr.write("fstrace: watching cgroups under %s (%s)\n" % (
                mount, ", ".join("%s %s" % kv for kv in cgmap.sources.items())))
        out.flush()
        while not stop and (limit is None or time.monotonic() - started < limit):
            p.poll(100)
            emit(cgmap.poll())
            if p.lost():
                emit(cgmap.resweep())
            out.flush()
        p.poll(0)                       # what the kernel sent before the end
        emit(cgmap.poll())
        if as_json:
            out.write(json.dumps({"type": "summary", "ts": round(time.time(), 6),
                                  "duration_s": round(time.monotonic() - started, 3)}) + "\n")
        out.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        p.close()
        if cgmap is not None:
            cgmap.close()
    return 0
