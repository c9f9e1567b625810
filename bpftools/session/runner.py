"""The loop every command shares: load the probe, follow cgroups, run the command, stop.

A Session owns a probe (the kernel layer: BPF program, ring buffer,
counters), a cgroup map and, with `-- CMD`, the command in its transient
cgroup.  The probe is injected (``load_probe``) and so is the cgroup map,
so the same loop runs on recorded ring-buffer bytes without root
(tests/unit/test_replay.py).  What a record means is for the two kinds of
session: StreamSession (session/stream.py) has file records written by the
sink's compiled formatter (or turned into FileEvents), CountingSession (session/counting.py) drains the kernel's
counters into ticks.  ``open_session()`` picks one.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from bpftools import abi
from bpftools.abi import REC_CGROUP, REC_TASK, TASK_FORK
from bpftools.cgroups import map as cgroup_map
from bpftools.cgroups import runtimes as runtime_state
from bpftools.cgroups.names import Names
from bpftools.cgroups.runtime_watch import StateWatcher
from bpftools.cgroups.select import (
    container_selects,
    glob_root,
    glob_selects,
    level_of,
    pod_selects,
    split_specs,
    within,
)
from bpftools.errors import UsageError
from bpftools.kernel import probe
from bpftools.session import command
from bpftools.session.contract import Options, StartInfo, Totals
from bpftools.session.paths import Parents

POLL_MS = 50
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_FIND = object()        # cgmap default: the cgroup2 mount's map, if there is a cgroup2 mount


@contextlib.contextmanager
def stop_signals_held():
    """SIGINT and SIGTERM wait until the block is done (they are handled as it ends).

    A stop signal that arrives while a sink writes a large document into a
    full pipe can leave that document cut short in the output (seen with top
    --json: a 26 KB line cut at 9 KB, the next document after it); held, it
    arrives between two iterations of the loop, where it only ends the run.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Session:
    """Probe + cgroup map + command + the main loop; subclasses say what records mean."""

    ring_pages = probe.ProbeConfig.ring_pages

    def __init__(self, opts: Options, sink, *, load_probe=probe.Probe, cgmap=_FIND,
                 runtimes: runtime_state.Runtimes | None = None, transient=None):
        self.opts = opts
        self.sink = sink
        self.totals = Totals()
        self.stopping = False
        self.child: subprocess.Popen | None = None
        self.transient: command.TransientCgroup | command.TransientScope | None = None
        self._load_probe = load_probe
        # (mount, command) -> the command's cgroup, or its systemd scope on a systemd host
        self._transient = transient or command.transient_for
        if cgmap is _FIND:
            try:
                cgmap = cgroup_map.CgroupMap(mount=cgroup_map.cgroup2_mount())
            except cgroup_map.Cgroup2Unavailable:
                cgmap = None        # events still flow, with bare cgroup ids
        self.cgmap: cgroup_map.CgroupMap | None = cgmap
        self.mount = cgmap.mount if cgmap else None
        self._globs: list[str] = []
        self._subtrees: list[str] = []
        self._follow_paths: set[str] = set()
        self._offset = time.time() - time.monotonic()
        self.parents = Parents()            # ppids, from the fork records
        # container names from the runtimes' state; views read the same cache (runtimes.named).  Given
        # runtimes are used as they are; the shared cache is also fed by a thread watching the runtimes.
        self.runtimes = runtimes if runtimes is not None else runtime_state.shared()
        self._watch_runtimes = runtimes is None
        self.runtime_watcher: StateWatcher | None = None

    # --- setup ------------------------------------------------------------------
    def _filter_ids(self) -> tuple[list[int], int]:
        """Cgroup ids for the kernel's subtree filter and the smallest level they sit at.

        A glob is filtered in two steps: the kernel lets through the subtree
        of its fixed prefix (so a cgroup born a microsecond ago is never
        missed), and cgroup_path_wanted() keeps the events whose cgroup, or
        an ancestor of it, matches the glob.
        """
        paths, ids, self._globs = split_specs(self.opts.cgroups, self.mount)
        if (paths or self._globs) and not self.cgmap:
            raise UsageError("--cgroup with a path needs cgroup2, and none is mounted (try a cgroup id)")
        alive = {info.path: info for info in self.cgmap.entries() if info.alive} if self.cgmap else {}
        by_id = {info.id: info for info in alive.values()}
        for cgid in ids:
            if self.cgmap and cgid not in by_id:
                raise UsageError("cgroup id %d not found under %s" % (cgid, self.mount))
        prefixes = [glob_root(glob) for glob in self._globs]
        for path in paths + prefixes:
            if path not in alive:
                raise UsageError("cgroup %s not found under %s" % (path, self.mount))
        self._subtrees = paths + [by_id[cgid].path for cgid in ids if cgid in by_id]
        self._follow_paths = set(paths)     # a path removed and made again is followed under its new id
        roots = [alive[p].id for p in paths + prefixes] + ids
        levels = [level_of(p) for p in paths + prefixes] + [level_of(by_id[c].path) if c in by_id else 0 for c in ids]
        return roots, min(levels, default=0)

    def cgroup_path_wanted(self, path: str | None) -> bool:
        """Does a cgroup path pass --cgroup (the kernel has filtered by subtree already)?"""
        if not self._globs:
            return True
        if path is None:
            return False
        return (any(within(path, sub) for sub in self._subtrees)
                or any(glob_selects(glob, path) for glob in self._globs))

    def names_wanted(self, names: Names) -> bool:
        """Do a cgroup's names pass --container and --pod (decided in user space, on the runtime's names)?"""
        o = self.opts
        if o.containers and not any(container_selects(spec, names) for spec in o.containers):
            return False
        return not o.pods or any(pod_selects(spec, names) for spec in o.pods)

    def names_of(self, path: str) -> Names:
        """A cgroup's names, the runtime's included where its state can be read (retried while it cannot)."""
        return runtime_state.named(path, self.runtimes)

    def _cgroup_wanted(self, path: str) -> bool:
        """Is a cgroup change inside what is traced?"""
        if (self.opts.containers or self.opts.pods) and not self.names_wanted(self.names_of(path)):
            return False
        if self._globs:
            return self.cgroup_path_wanted(path)
        return not self._subtrees or any(within(path, sub) for sub in self._subtrees)

    def probe_config(self, cgroup_ids: list[int], min_level: int) -> probe.ProbeConfig:
        o = self.opts
        return probe.ProbeConfig(
            backend=o.backend, mounts=o.mounts, events=o.events, failed=o.failed, pids=o.pids,
            comms=o.comms, cgroup_filter=bool(cgroup_ids), cgroup_min_level=min_level,
            aggregate=o.aggregate, ring_pages=self.ring_pages, slower_than_ns=o.slower_than_ns)

    def start(self) -> StartInfo:
        """Load and attach the probe; from the return on, nothing the user asked for is missed."""
        if self.opts.command:
            command.check(self.opts.command)
            if not self.mount:
                raise UsageError("-- CMD needs cgroup2 to follow the command and its children")
            # on a systemd host a stopped process already waits in the scope: released by run()
            self.transient = self._transient(self.mount, self.opts.command)
            self.cgmap.feed("mkdir", self.transient.id, self.transient.path, time.monotonic())
        ids, min_level = self._filter_ids()
        if self._watch_runtimes:
            self.runtime_watcher = StateWatcher(self.runtimes).start()
        if self.transient:
            ids.append(self.transient.id)
            min_level = level_of(self.transient.path) if not self.opts.cgroups else min(min_level, 1)
            self._subtrees.append(self.transient.path)
        self.probe = self._load_probe(self.probe_config(ids, min_level), self._reader())
        if ids:
            self.probe.add_cgroups(ids)
        self._started()
        rep = self.probe.report
        if self.cgmap and "cgroup/cgroup_mkdir" in rep.skipped:
            self.cgmap.disable("tracepoint", rep.skipped["cgroup/cgroup_mkdir"])
        return StartInfo(
            backend=rep.backend, kernel=os.uname().release, headers=rep.headers.describe(),
            headers_match=rep.headers.matches, tracepoints=rep.tracepoints, skipped=rep.skipped,
            missing_syscalls=rep.missing_syscalls,
            cgroup_sources=self.cgmap.sources if self.cgmap else {"all": "off: no cgroup2 mount"},
            events=self.opts.events,
            command_cgroup=self.transient.path if self.transient else None,
            backend_reasons=dict(rep.reasons), passed_over=tuple(rep.passed_over), armed=dict(rep.armed),
            failed=self.opts.failed, command=tuple(self.opts.command),
            filters={"pids": list(self.opts.pids), "comms": list(self.opts.comms), "cgroups": list(self.opts.cgroups),
                     "containers": list(self.opts.containers), "pods": list(self.opts.pods)},
            bytes=rep.moves_bytes, blind_spots=list(rep.blind_spots), latency=rep.times,
            slower_than_ns=self.opts.slower_than_ns,
        )

    # --- what subclasses extend ------------------------------------------------------
    def _reader(self):
        """What the probe hands the ring to: a callable per record (here), or an object with drain(ring)."""
        return self._on_bytes

    def _started(self) -> None:
        """The probe is attached (counting starts here)."""

    def _record(self, rec: abi.Record) -> None:
        """A ring-buffer record other than a cgroup change: here, task bookkeeping."""
        if rec.type != REC_TASK:
            return
        if rec.op == TASK_FORK:
            self.parents.forked(rec.pid, rec.fd)

    def _lost(self, count: int) -> None:
        """count records were lost since the last poll (already in totals)."""

    def _polled(self, last: bool) -> None:
        """After each poll of the ring buffer; last: the final one."""

    def _finished(self) -> bool:
        """Does the sink want the run to end?"""
        return False

    # --- the stream -------------------------------------------------------------
    def _on_bytes(self, data) -> None:
        rec = abi.decode(data)
        if rec.type == REC_CGROUP:
            if self.cgmap:
                path = os.fsdecode(rec.name1 or b"")      # as the sweep and fanotify spell it
                self._cgroup_changes(self.cgmap.feed(abi.CG_ACTIONS[rec.op], rec.cgroup_id, path, rec.ts_ns / 1e9))
        else:
            self._record(rec)

    def _cgroup_changes(self, changes) -> None:
        for change in changes:
            if change.action == "mkdir":
                self.names_of(change.path)      # read a new container's state now: `run --rm` removes it soon
                if change.path in self._follow_paths:
                    self.probe.add_cgroups([change.id])
            if self._cgroup_wanted(change.path):
                self.sink.cgroup(replace(change, ts=self._offset + change.ts))

    # --- the loop ---------------------------------------------------------------
    def request_stop(self, signum=None, _frame=None) -> None:
        self.stopping = True
        if signum is not None and self.child and self.child.poll() is None:
            self.child.send_signal(signum)

    def _done(self) -> bool:
        if self.stopping:
            return True
        if self.opts.duration is not None and time.monotonic() - self.totals.started >= self.opts.duration:
            return True
        if self.child is not None and self.child.poll() is not None:
            return not self.transient.populated()
        return self._finished()

    def _tick(self, timeout_ms: int) -> None:
        self.probe.poll(timeout_ms)
        if self.cgmap:
            self._cgroup_changes(self.cgmap.poll())
        lost = self.probe.lost()
        if lost:
            self.totals.lost += lost
            self._lost(lost)
            if self.cgmap:
                self._cgroup_changes(self.cgmap.resweep())

    def run(self) -> int:
        """Trace until the duration ends, the command's cgroup empties, or a signal; the exit status."""
        old = {s: signal.signal(s, self.request_stop) for s in STOP_SIGNALS}
        try:
            self.totals.started = time.monotonic()
            if self.opts.command:
                self.child = self.transient.spawn(self.opts.command)
                self._spawned(self.child.pid)
            while not self._done():
                with stop_signals_held():     # a signal waits for the sink's writes, at most one poll
                    self._tick(POLL_MS)
                    self._polled(last=False)
                    self.sink.flush()
            with stop_signals_held():
                self._tick(0)      # what was sent before the end
                self._polled(last=True)
            if self.child is not None:
                try:
                    self.child.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
            return command.exit_status(self.child)
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _spawned(self, pid: int) -> None:
        """The command runs as pid (a child of fstrace)."""
        self.parents.forked(os.getpid(), pid)

    def close(self) -> None:
        # Closing an inotify or fanotify group waits for the kernel's SRCU grace period, as a
        # tracepoint detach waits for RCU: the three wait side by side.
        closers = [c.close for c in (self.runtime_watcher, getattr(self, "probe", None), self.cgmap) if c]
        with ThreadPoolExecutor(len(closers) or 1) as pool:
            for done in [pool.submit(c) for c in closers]:
                done.result()
        if self.transient:
            self.transient.remove()

    @property
    def duration(self) -> float:
        return time.monotonic() - self.totals.started
