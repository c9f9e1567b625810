"""The aggregation model of `fstrace top` and `fstrace report`: counter entries -> rows.

Pure: no I/O, no clock, no terminal.
  rows.py        Tick, Row, Focus; grouping, drilling in, filtering and sorting entries into rows
  aggregate.py   Aggregator: ticks in, the last tick (top) or the whole run (report) out
  snapshot.py    Snapshot: what top shows and top --json writes after one tick
  latency.py     Latency: the kernel's latency histograms per cgroup and event type, percentiles
The names below are the model's public face for the views.
"""
from bpftools.model.aggregate import Aggregator, CgroupLife, merge_pairs  # noqa: F401
from bpftools.model.latency import Latency, bucket_bounds, latencies  # noqa: F401
from bpftools.model.rows import *  # noqa: F401,F403
from bpftools.model.snapshot import Snapshot, snapshot, views_for  # noqa: F401
