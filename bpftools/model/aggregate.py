"""The Aggregator: ticks in; the last tick (top) and, cumulatively, the whole run (report) out."""
from __future__ import annotations

from collections import deque

from bpftools.abi import EVENT_NAMES, HIST_BUCKETS, LAT_SLOTS, NO_TIME, Entry
from bpftools.model.rows import (
    EV_COUNT,
    EXEC,
    HISTORY,
    MAX_LIVES,
    MAX_REPORT_ENTRIES,
    MAX_TIMELINE,
    OTHER_FILE,
    CgroupLife,
    Focus,
    Row,
    Tick,
    add_into,
    busiest,
    errno_label,
    file_path,
    focused,
    group_rows,
    summarize,
    tick_bytes,
    tick_time,
    trend_key,
)

MAX_PPIDS = 100_000     # parent pids remembered (forgotten all at once beyond)


class Aggregator:
    """Ticks in; the last tick (top) and, with cumulative=True, the whole run (report) out."""

    def __init__(self, cumulative: bool = False, history: int = HISTORY,
                 max_entries: int = MAX_REPORT_ENTRIES):
        self.cumulative = cumulative
        self.last: Tick | None = None
        self.ticks = 0
        self.trends: deque[dict] = deque(maxlen=history)
        self.first_ts: float | None = None
        self.end_ts: float | None = None
        self.elapsed = 0.0
        self.overflow = [0] * EV_COUNT
        self.lost = 0
        self.tick_counts = [0] * EV_COUNT       # the last tick: successes per event
        self.tick_failed = 0
        self.tick_bytes = (0, 0)                # the last tick: bytes read, written
        self.bytes_total = [0, 0]               # every tick: bytes read, written
        self.tick_time = (0, 0)                 # the last tick: ns spent in timed operations, how many
        self.hist_overflow = 0                  # every tick: timed operations the histogram map had no room for
        # cumulative state
        self.max_entries = max_entries
        self.totals: dict[tuple, list[int]] = {}
        self.moved: dict[tuple, list[int]] = {}  # same keys as totals: [read bytes, write bytes], when any
        self.times: dict[tuple, list[int]] = {}  # same keys as totals: lat_ns per slot + timed per slot, when any
        self.hists: dict[tuple[int, int], list] = {}    # (cgroup id, event code) -> [bucket counts, max ns, sum ns]
        self.comms: dict[int, bytes] = {}
        self.cgroups: dict[int, str] = {}
        self.files: dict[int, str] = {}
        self.timeline: list[tuple[float, float, dict[int, int]]] = []   # (start, seconds, cgroup id -> events)
        self.bytes_timeline: list[tuple[float, float, int, int]] = []   # (start, seconds, read, written)
        self.lives: dict[int, CgroupLife] = {}
        self.since: float | None = None         # when accumulating began (the start of its first tick)
        self.ppids: dict[int, int] = {}         # pid -> parent pid, as the ticks said

    def set_cumulative(self, on: bool) -> None:
        """Start (from the next tick) or stop keeping running totals."""
        if on == self.cumulative:
            return
        self.cumulative = on
        self.totals, self.comms, self.timeline, self.since = {}, {}, [], None
        self.moved, self.bytes_timeline = {}, []
        self.times, self.hists = {}, {}

    def add(self, tick: Tick) -> None:
        if self.first_ts is None:
            self.first_ts = tick.ts - tick.elapsed
        self.end_ts = tick.ts
        self.elapsed += tick.elapsed
        self.ticks += 1
        self.last = tick
        if len(self.ppids) > MAX_PPIDS:
            self.ppids = {}
        self.ppids.update(tick.ppids)
        add_into(self.overflow, tick.overflow)
        self.hist_overflow += tick.hist_overflow
        self.lost += tick.lost
        self.tick_counts, self.tick_failed, trends = summarize(tick.entries, tick.cgroups, tick.files)
        if tick.elapsed > 0:        # rates: ticks of different lengths (+ and - in top) compare
            trends = {k: n / tick.elapsed for k, n in trends.items()}
        self.tick_bytes = tick_bytes(tick.entries)
        self.tick_time = tick_time(tick.entries)
        self.bytes_total[0] += self.tick_bytes[0]
        self.bytes_total[1] += self.tick_bytes[1]
        self.trends.append(trends)
        if self.cumulative:
            if self.since is None:
                self.since = tick.ts - tick.elapsed
            self._accumulate(tick)

    def _accumulate(self, tick: Tick) -> None:
        self.cgroups.update(tick.cgroups)
        per_cgroup: dict[int, int] = {}
        for e in tick.entries:
            key = (e.cgroup_id, e.pid, e.file, e.err)
            acc = self.totals.get(key)
            if acc is None:
                if len(self.totals) >= self.max_entries:
                    key = (e.cgroup_id, e.pid, OTHER_FILE, e.err)
                    acc = self.totals.get(key)
                if acc is None:
                    acc = self.totals[key] = [0] * EV_COUNT
            if key[2] == e.file and e.file in tick.files:
                self.files[e.file] = tick.files[e.file]
            add_into(acc, e.counts)
            if e.read_bytes or e.write_bytes:
                m = self.moved.get(key)
                if m is None:
                    m = self.moved[key] = [0, 0]
                m[0] += e.read_bytes
                m[1] += e.write_bytes
            if e.timed is not NO_TIME and any(e.timed):
                t = self.times.get(key)
                if t is None:
                    t = self.times[key] = [0] * (2 * LAT_SLOTS)
                add_into(t, e.lat_ns + e.timed)
            if (e.counts[EXEC] and not e.err) or e.pid not in self.comms:
                self.comms[e.pid] = e.comm      # a failed exec (a PATH search) renames nothing
            if not e.err:
                per_cgroup[e.cgroup_id] = per_cgroup.get(e.cgroup_id, 0) + sum(e.counts)
        for h in tick.hists:
            acc = self.hists.get((h.cgroup_id, h.op))
            if acc is None:
                acc = self.hists[(h.cgroup_id, h.op)] = [[0] * HIST_BUCKETS, 0, 0]
            add_into(acc[0], h.buckets)
            acc[1] = max(acc[1], h.max_ns)
            acc[2] += h.sum_ns
        self.timeline.append((tick.ts - tick.elapsed, tick.elapsed, per_cgroup))
        self.bytes_timeline.append((tick.ts - tick.elapsed, tick.elapsed) + self.tick_bytes)
        if len(self.timeline) > MAX_TIMELINE:
            self.timeline = merge_pairs(self.timeline)
            self.bytes_timeline = merge_byte_pairs(self.bytes_timeline)

    def cgroup_change(self, action: str, cgid: int, path: str, ts: float) -> None:
        """A cgroup mkdir/rmdir seen while counting (the first MAX_LIVES cgroups)."""
        if cgid not in self.lives and len(self.lives) >= MAX_LIVES:
            return
        life = self.lives.get(cgid, CgroupLife(cgid, path))
        if action == "mkdir":
            life = CgroupLife(cgid, path, ts, life.removed)
        else:
            life = CgroupLife(cgid, life.path or path, life.created, ts)
        self.lives[cgid] = life
        self.cgroups.setdefault(cgid, path)

    # --- views of the last tick (top) ----------------------------------------------
    def rows(self, by: str, focus: tuple[Focus, ...] = (), accumulated: bool = False) -> list[Row]:
        """Rows of the last tick, or (accumulated, with cumulative on) of everything since it was turned on."""
        if accumulated and self.cumulative:
            rows = group_rows(focused(self.entries(), focus, self.cgroups, self.files), by, self.cgroups,
                              self.files)
        elif self.last is None:
            return []
        else:
            t = self.last
            rows = group_rows(focused(t.entries, focus, t.cgroups, t.files), by, t.cgroups, t.files)
        if by == "process":
            for row in rows:
                row.extra["ppid"] = self.ppids.get(row.key)
        return rows

    def trend(self, row: Row) -> list[int]:
        """The row's total in each of the last HISTORY ticks, oldest first."""
        k = trend_key(row)
        return [t.get(k, 0) for t in self.trends]

    # --- views of the whole run (report) ---------------------------------------
    def entries(self) -> list[Entry]:
        moved, times = self.moved, self.times
        return [Entry(cg, f, pid, err, self.comms.get(pid, b""), tuple(c), *moved.get(k, (0, 0)),
                      *((tuple(t[:LAT_SLOTS]), tuple(t[LAT_SLOTS:])) if t else ()))
                for k, c in self.totals.items() for cg, pid, f, err in (k,) for t in (times.get(k),)]

    def run_totals(self) -> tuple[list[int], int]:
        counts = [0] * EV_COUNT
        failed = 0
        for (_, _, _, err), c in self.totals.items():
            if err:
                failed += sum(c)
            else:
                add_into(counts, c)
        return counts, failed

    def errors(self) -> list[dict]:
        """Failed operations by errno and event, with the process and file that failed most."""
        out: dict[tuple[str, str], dict] = {}
        for (cg, pid, f, err), c in self.totals.items():
            if not err:
                continue
            for code, n in enumerate(c):
                if not n:
                    continue
                k = (errno_label(err), EVENT_NAMES[code])
                row = out.setdefault(k, {"errno": k[0], "event": k[1], "count": 0, "_p": {}, "_f": {}})
                row["count"] += n
                comm = self.comms.get(pid, b"").decode("utf-8", "surrogateescape")
                p = "%s[%d]" % (comm, pid)
                row["_p"][p] = row["_p"].get(p, 0) + n
                path = file_path(f, self.files)
                row["_f"][path] = row["_f"].get(path, 0) + n
        rows = []
        for row in out.values():
            row["top_process"] = busiest(row.pop("_p"))
            row["top_path"] = busiest(row.pop("_f"))
            rows.append(row)
        rows.sort(key=lambda r: (-r["count"], r["errno"], r["event"]))
        return rows

    def lifecycle(self) -> list[CgroupLife]:
        """Cgroups created or removed during the run, the shortest-lived first."""
        lives = list(self.lives.values())
        lives.sort(key=lambda l: (l.lifetime is None, l.lifetime or 0.0, l.path))
        return lives

    def series(self, cgroup_ids) -> list[tuple[float, float, list[int]]]:
        """Per timeline point: (start, seconds, events of each cgroup in cgroup_ids)."""
        return [(start, secs, [counts.get(c, 0) for c in cgroup_ids]) for start, secs, counts in self.timeline]


def merge_byte_pairs(timeline):
    """Halve a bytes timeline's resolution: neighbours (start, seconds, read, written) become one point."""
    out = []
    for i in range(0, len(timeline), 2):
        pair = timeline[i:i + 2]
        out.append((pair[0][0], sum(p[1] for p in pair), sum(p[2] for p in pair), sum(p[3] for p in pair)))
    return out


def merge_pairs(timeline):
    """Halve a timeline's resolution: neighbours (start, seconds, counts) become one point."""
    out = []
    for i in range(0, len(timeline), 2):
        pair = timeline[i:i + 2]
        counts: dict[int, int] = {}
        for _, _, c in pair:
            for k, n in c.items():
                counts[k] = counts.get(k, 0) + n
        out.append((pair[0][0], sum(p[1] for p in pair), counts))
    return out
