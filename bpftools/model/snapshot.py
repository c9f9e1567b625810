"""What top shows after one tick, and what top --json writes: a Snapshot of an Aggregator."""
from __future__ import annotations

from dataclasses import dataclass

from bpftools.model.aggregate import Aggregator
from bpftools.model.rows import DEFAULT_SORT, DRILL, GROUPINGS, SORT_KEYS, Focus, Row, arrange, trend_key


@dataclass
class Snapshot:
    """What top shows after one tick, and what top --json writes: pure data."""

    ts: float
    elapsed: float
    uptime: float
    tracked: int
    totals: list[int]           # successful operations per event in the tick
    failed: int
    lost: int                   # in this tick
    overflow: int               # in this tick
    lost_total: int
    overflow_total: int
    group: str
    sort: str
    reverse: bool
    focus: tuple[Focus, ...]
    text: str
    tables: list[tuple[str, list[Row]]]     # (grouping, arranged rows); two when drilled in
    trends: dict                            # trend_key(row) -> events/s in each of the last ticks
    accumulated: bool = False               # tables hold counts since accumulating began, not the tick's
    accumulated_since: float | None = None  # when that began
    read_bytes: int = 0                     # bytes read in the tick, everything counted
    write_bytes: int = 0
    read_bytes_total: int = 0               # since the start
    write_bytes_total: int = 0


def views_for(group: str, focus: tuple[Focus, ...]) -> tuple[str, ...]:
    """The groupings shown: the chosen one, or the two tables below a drill-in."""
    return DRILL[focus[-1].group] if focus else (group,)


def snapshot(agg: Aggregator, group: str = "cgroup", sort: str = DEFAULT_SORT, reverse: bool = False,
             focus: tuple[Focus, ...] = (), text: str = "", groupings: tuple[str, ...] | None = None,
             trend_rows: int = 200, accumulated: bool = False) -> Snapshot:
    """The last tick of agg, grouped, drilled into, filtered and sorted as asked.

    Trends come with the first trend_rows rows of each table (no screen shows more).
    """
    if group not in GROUPINGS:
        raise ValueError("unknown grouping %r (known: %s)" % (group, ", ".join(GROUPINGS)))
    if sort not in SORT_KEYS:
        raise ValueError("unknown sort key %r (known: %s)" % (sort, ", ".join(SORT_KEYS)))
    tables = []
    for by in groupings or views_for(group, focus):
        tables.append((by, arrange(agg.rows(by, focus, accumulated), by, sort, reverse, text)))
    trends = {trend_key(r): agg.trend(r) for _, rows in tables for r in rows[:trend_rows]}
    t = agg.last
    return Snapshot(
        ts=t.ts if t else 0.0, elapsed=t.elapsed if t else 0.0, uptime=t.uptime if t else 0.0,
        tracked=t.tracked if t else 0, totals=list(agg.tick_counts), failed=agg.tick_failed,
        lost=t.lost if t else 0, overflow=sum(t.overflow) if t else 0,
        lost_total=agg.lost, overflow_total=sum(agg.overflow), group=group, sort=sort, reverse=reverse,
        focus=focus, text=text, tables=tables, trends=trends, accumulated=accumulated and agg.cumulative,
        accumulated_since=agg.since,
        read_bytes=agg.tick_bytes[0], write_bytes=agg.tick_bytes[1],
        read_bytes_total=agg.bytes_total[0], write_bytes_total=agg.bytes_total[1],
    )
