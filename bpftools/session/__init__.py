"""The session layer: kernel records in, event lines (or FileEvents) or model.Ticks out to a sink.

  contract.py   Options, FileEvent, StartInfo and the Sink protocols
  runner.py     the loop: probe, cgroup map, signals, the command
  stream.py     trace: every file record written by the sink's compiled formatter (bpftools/fastpath)
  counting.py   top, report, export: the kernel's counters drained into ticks
  command.py    `-- CMD` in a transient cgroup
  paths.py      names as the kernel sends them, and who forked whom
"""
from __future__ import annotations

from bpftools.session.contract import Options
from bpftools.session.counting import CountingSession
from bpftools.session.stream import StreamSession


def open_session(opts: Options, sink, **kw) -> StreamSession | CountingSession:
    """The session for opts: counting in the kernel (opts.aggregate) or streaming every event."""
    return (CountingSession if opts.aggregate else StreamSession)(opts, sink, **kw)
