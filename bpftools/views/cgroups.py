"""`fstrace cgroups --watch`: cgroup creation and removal as lines of text or JSON."""
from __future__ import annotations

import json
import sys
import time

from bpftools.cgroups.runtimes import named, runtime_names
from bpftools.escape import terminal_safe
from bpftools.session.contract import StreamSink


def owner(rec: dict) -> str:
    """The container by its name (and image) where its runtime names it, else runtime:short-id, else the unit."""
    if rec["container_name"]:
        name = rec["container_name"]
        if rec["pod_name"]:
            name = "%s/%s/%s" % (rec["pod_namespace"] or "", rec["pod_name"], name)
        return "%s (%s)" % (name, rec["image"]) if rec["image"] else name
    return rec["container"] or rec["unit"] or ""


def change_record(change) -> dict:
    # the session read the container's state when its cgroup appeared; a removed one's names stay cached
    names = named(change.path, read=False)
    return {"type": "cgroup", "action": change.action, "ts": round(change.ts, 6), "id": change.id,
            "path": change.path, "unit": names.unit, "container": names.container, "pod": names.pod,
            **runtime_names(names), "source": change.source}


def change_line(rec: dict) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(rec["ts"])) + ".%06d" % int(rec["ts"] % 1 * 1e6)
    who = owner(rec)
    return terminal_safe("%s %-5s %10d %s%s" % (stamp, rec["action"], rec["id"], rec["path"],
                                                 "  (%s)" % who if who else ""))


class WatchSink(StreamSink):
    """Every cgroup change the session reports, once, in order; file events never arrive."""

    def __init__(self, out, as_json: bool, mount: str):
        self.out = out
        self.as_json = as_json
        self.mount = mount

    def start(self, info, ts: float, pid: int) -> None:
        if self.as_json:
            self.out.write(json.dumps({"type": "start", "ts": round(ts, 6), "mount": self.mount,
                                       "sources": info.cgroup_sources}) + "\n")
        else:
            sys.stderr.write("fstrace: watching cgroups under %s (%s)\n" % (
                self.mount, ", ".join("%s %s" % kv for kv in info.cgroup_sources.items())))
            sys.stderr.flush()

    def cgroup(self, change) -> None:
        rec = change_record(change)
        self.out.write((json.dumps(rec, ensure_ascii=False) if self.as_json else change_line(rec)) + "\n")

    def flush(self) -> None:
        self.out.flush()

    def summary(self, ts: float, totals, backend: str, duration: float) -> None:
        if self.as_json:
            self.out.write(json.dumps({"type": "summary", "ts": round(ts, 6), "duration_s": round(duration, 3)})
                           + "\n")
