"""Latency histograms: per (cgroup, event type), the kernel's log2 buckets of ns (pure).

The kernel counts each timed operation (opens, reads, writes, syncs) in the
bucket floor(log2(ns)) of its cgroup and event type (bpf/fst_count.h,
abi.Hist).  Percentiles are exact to the bucket: pN is the upper bound of
the bucket that holds the N-th percentile, or the slowest operation seen if
that is less.
"""
from __future__ import annotations

from dataclasses import dataclass

from bpftools.abi import EVENT_NAMES, HIST_BUCKETS
from bpftools.model.rows import cgroup_path


def bucket_bounds(b: int) -> tuple[int, int | None]:
    """The ns a bucket holds: [2**b, 2**(b+1)); the last bucket has no upper bound."""
    return (1 << b if b else 0), (None if b == HIST_BUCKETS - 1 else 1 << (b + 1))


@dataclass
class Latency:
    """The timed operations of one event type in one cgroup over a run."""

    cgroup: str                     # cgroup path
    event: str
    buckets: list[int]              # HIST_BUCKETS counts
    max_ns: int
    sum_ns: int = 0

    @property
    def count(self) -> int:
        return sum(self.buckets)

    def percentile(self, q: float) -> int:
        """The q-th percentile (0 < q <= 100) in ns, to the bucket: the upper bound of its bucket, at most max_ns."""
        n = self.count
        if not n:
            return 0
        rank = max(1, -(-n * q // 100))         # ceil(n * q / 100), at least the first
        seen = 0
        for b, c in enumerate(self.buckets):
            seen += c
            if seen >= rank:
                upper = bucket_bounds(b)[1]
                return self.max_ns if upper is None else min(upper, self.max_ns)
        return self.max_ns

    def shown_buckets(self) -> list[tuple[int, int]]:
        """(bucket, count) from the first to the last bucket with a count (empty ones between included)."""
        used = [b for b, c in enumerate(self.buckets) if c]
        if not used:
            return []
        return [(b, self.buckets[b]) for b in range(used[0], used[-1] + 1)]


def latencies(hists: dict[tuple[int, int], list], cgroups: dict[int, str]) -> list[Latency]:
    """One Latency per (cgroup path, event) of hists ((cgroup id, event code) -> [buckets, max ns, sum ns]), the
    slowest first (by max, then p99, then more operations, then by name).  Two ids with one path (a cgroup
    made again) are one."""
    out: dict[tuple[str, str], Latency] = {}
    for (cgid, op), (buckets, max_ns, sum_ns) in hists.items():
        path = cgroup_path(cgroups, cgid)
        key = (path, EVENT_NAMES[op] if op < len(EVENT_NAMES) else str(op))
        lat = out.get(key)
        if lat is None:
            out[key] = Latency(key[0], key[1], list(buckets), max_ns, sum_ns)
        else:
            lat.buckets = [a + b for a, b in zip(lat.buckets, buckets)]
            lat.max_ns = max(lat.max_ns, max_ns)
            lat.sum_ns += sum_ns
    return sorted((lat for lat in out.values() if lat.count),
                  key=lambda lat: (-lat.max_ns, -lat.percentile(99), -lat.count, lat.cgroup, lat.event))
