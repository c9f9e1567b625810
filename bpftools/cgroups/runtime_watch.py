"""A thread that reads each container's state the moment its runtime writes it (inotify)."""

from __future__ import annotations

import os
import select
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from bpftools.cgroups.runtime_state import StateRoots
from bpftools.cgroups.runtimes import ROOTS_REFRESH_S, Runtimes
from bpftools.kernel import inotify

PENDING_RETRY_S = 0.02      # a new container directory whose state file is not written yet: ask again
PENDING_MAX_S = 10.0        # ... for this long at most
MAX_PENDING = 4096
_WATCH = inotify.IN_CREATE | inotify.IN_MOVED_TO | inotify.IN_CLOSE_WRITE | inotify.IN_ONLYDIR


class StateWatcher:
    """A thread that reads each container's state the moment its runtime writes it.

    The session reads a container's state when it sees the container's
    cgroup or first event; under load that can be after a ``run --rm``
    container has come and gone, state and all.  This thread does not wait
    for the session: inotify wakes it when docker makes
    ``containers/<id>``, containerd a task bundle, or containers/storage
    replaces ``containers.json``, and it puts the names in the cache the
    session reads.  Roots are looked at again every ROOTS_REFRESH_S (a
    daemon started later, a store created later).  Nothing here is fatal:
    without inotify the session's own lookups still work.
    """

    def __init__(self, runtimes: Runtimes, clock: Callable[[], float] = time.monotonic):
        self.runtimes = runtimes
        self.clock = clock
        self._fd = -1
        self._wake_r = self._wake_w = -1
        self._wds: dict[int, tuple[str, str]] = {}      # watch descriptor -> (kind, directory)
        self._watched: set[str] = set()
        self._pending: OrderedDict[tuple, float] = OrderedDict()    # (kind, root, id) -> give up at
        self._thread: threading.Thread | None = None
        self._stop = False
        self.error: str | None = None

    def start(self) -> StateWatcher:
        try:
            self._fd = inotify.init()
        except OSError as e:
            self.error = str(e)
            return self
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._watch_roots()
        self._thread = threading.Thread(target=self._run, name="fstrace-runtime-state", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop = True
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join(timeout=2)
        for fd in (self._fd, self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._fd = self._wake_r = self._wake_w = -1

    # -- what to watch -----------------------------------------------------------
    def _add(self, path: str, kind: str) -> bool | None:
        """Watch a directory: True if newly watched, False if it was already, None if it cannot be."""
        if path in self._watched:
            return False
        wd = inotify.add_watch(self._fd, path, _WATCH)
        if wd < 0:
            return None
        self._wds[wd] = (kind, path)
        self._watched.add(path)
        return True

    def _watch_roots(self) -> StateRoots:
        """Watch every state directory of the current roots (again: new ones are added); the roots watched."""
        roots = self.runtimes.roots
        for root in roots.docker:
            self._add(f"{root}/containers", "docker")
        for root in roots.storage:
            self._add(root, "storage-root")
            for store in _listdir(root):
                if store.endswith("-containers"):
                    self._watch_store(f"{root}/{store}")
        for root in roots.containerd:
            self._add(root, "containerd-root")
            for rt in _listdir(root):
                if rt.startswith("io.containerd.runtime."):
                    self._watch_task_dir(f"{root}/{rt}")
        return roots

    def _watch_store(self, store: str) -> None:
        if self._add(store, "storage"):
            self._wait_for_storage(store)

    def _watch_task_dir(self, path: str, new: bool = False) -> None:
        if self._add(path, "containerd-runtime") is not None:
            for ns in _listdir(path):
                self._watch_namespace(f"{path}/{ns}", new)

    def _watch_namespace(self, path: str, new: bool) -> None:
        """Watch a containerd namespace's task dir; one made just now may hold bundles made before the watch."""
        if self._add(path, "containerd") and new:
            root = path.rsplit("/", 2)[0]
            for cid in _listdir(path):
                self._wait(("containerd", root, cid))

    def _wait_for_storage(self, store: str) -> None:
        for cid in self.runtimes.prime_storage(store):
            self._wait(("storage", store, cid))

    def _wait(self, key: tuple) -> None:
        if key not in self._pending:
            self._pending[key] = self.clock() + PENDING_MAX_S
            while len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)

    # -- the thread --------------------------------------------------------------
    def _run(self) -> None:
        refreshed = self.clock()
        watched = self.runtimes.roots
        while not self._stop:
            try:
                timeout = PENDING_RETRY_S if self._pending else 1.0
                ready, _, _ = select.select([self._fd, self._wake_r], [], [], timeout)
                if self._stop:
                    return
                if self._fd in ready:
                    for ev in inotify.read_events(self._fd):
                        self._event(ev)
                self._retry()
                if self.runtimes.roots != watched or self.clock() - refreshed >= ROOTS_REFRESH_S:
                    refreshed = self.clock()
                    watched = self._watch_roots()
            except Exception as e:     # noqa: BLE001 - a watcher that fails leaves the session's lookups
                self.error = "%s: %s" % (type(e).__name__, e)
                return

    def _event(self, ev: inotify.Event) -> None:
        if ev.mask & inotify.IN_Q_OVERFLOW:
            for kind, path in list(self._wds.values()):
                if kind == "storage":
                    self._wait_for_storage(path)
            return
        if ev.mask & inotify.IN_IGNORED:
            kind_path = self._wds.pop(ev.wd, None)
            if kind_path:
                self._watched.discard(kind_path[1])
            return
        kind, path = self._wds.get(ev.wd, ("", ""))
        name = ev.name
        if kind == "docker" and name:
            self._wait(("docker", path[: -len("/containers")], name))
        elif kind == "containerd" and name:
            self._wait(("containerd", path.rsplit("/", 2)[0], name))
        elif kind == "containerd-runtime" and name:
            self._watch_namespace(f"{path}/{name}", new=True)
        elif kind == "containerd-root" and name.startswith("io.containerd.runtime."):
            self._watch_task_dir(f"{path}/{name}", new=True)
        elif kind == "storage-root" and name.endswith("-containers"):
            self._watch_store(f"{path}/{name}")
        elif kind == "storage" and name == "containers.json":
            self._wait_for_storage(path)

    def _retry(self) -> None:
        now = self.clock()
        for key, give_up in list(self._pending.items()):
            kind, root, cid = key
            if kind == "storage":
                done = cid not in self.runtimes.prime_storage(root, complete_only=now < give_up)
            else:
                done = self.runtimes.prime(kind, root, cid) or now >= give_up
            if done:
                self._pending.pop(key, None)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
