"""Container id -> the names its runtime keeps: a cache shared by the session and the views.

What is found is cached per container id and kept (up to ``max_entries``,
least recently used forgotten first), so events from a container that has
already been removed -- ``podman run --rm`` -- still get its name once it was
read.  State that cannot be read or parsed (a container being created, a file
half-written) is a miss, asked for again after ``retry_s`` seconds, then
twice as long each time up to ``MAX_RETRY_S``: a container's state is
usually complete a few milliseconds after its cgroup appears.  A miss is
never an error.  The files and the roots are ``runtime_state.py``; a thread
that fills this cache as the runtimes write (``runtime_watch.py``) keeps
short-lived containers named however far behind the session is.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from bpftools.cgroups.names import Names, names_from_path
from bpftools.cgroups.runtime_state import (
    DEFAULT_ROOTS,
    ContainerInfo,
    StateRoots,
    _read_json,
    discover_roots,
    docker_info,
    oci_info,
    storage_info,
)

DEFAULT_MAX_ENTRIES = 4096
DEFAULT_RETRY_S = 0.05    # the first retry; then twice as long each time, up to MAX_RETRY_S
MAX_RETRY_S = 5.0
ROOTS_REFRESH_S = 5.0
MISS_REFRESH_S = 0.5       # after a miss, roots older than this are looked for again

# -- the cache ----------------------------------------------------------------

# Which stores to try first for a runtime names.py recognised; the others follow.
_ORDER = {
    "docker": ("docker", "containerd", "storage"),
    "podman": ("storage", "docker", "containerd"),
    "podman-conmon": ("storage",),
    "crio": ("storage", "containerd", "docker"),
    "crio-conmon": ("storage",),
    "containerd": ("containerd", "storage", "docker"),
    "cri": ("containerd", "storage", "docker"),
}
_ALL = ("docker", "storage", "containerd")
_ID = re.compile(r"[0-9a-f]{12,64}")


@dataclass
class _Miss:
    next_try: float
    tries: int = 1


@dataclass
class _StorageIndex:
    stamp: tuple = ()
    entries: dict = field(default_factory=dict)


class Runtimes:
    """Container id -> ``ContainerInfo``, read from the runtimes' state and cached.

    ``lookup()`` never raises: what cannot be found or read yet is None, and
    is looked for again once its backoff (``retry_s``, doubling) has passed.
    """

    def __init__(self, roots: StateRoots | None = None, *, discover: Callable[[], StateRoots] | None = None,
                 clock: Callable[[], float] = time.monotonic, retry_s: float = DEFAULT_RETRY_S,
                 max_entries: int = DEFAULT_MAX_ENTRIES):
        self._fixed = roots
        self._discover = discover or discover_roots
        self._roots: StateRoots | None = roots
        self._roots_at = -1e18
        self.clock = clock
        self.retry_s = retry_s
        self.max_entries = max_entries
        self._found: OrderedDict[str, ContainerInfo] = OrderedDict()
        self._missed: OrderedDict[str, _Miss] = OrderedDict()
        self._storage: dict[str, _StorageIndex] = {}
        self._pods: OrderedDict[str, tuple[str, str | None]] = OrderedDict()    # pod uid -> (name, namespace)
        self._lock = threading.RLock()     # StateWatcher's thread primes the cache the session reads
        self.reads = 0   # lookups that read state (misses and first hits): what the cache saved is visible

    @property
    def roots(self) -> StateRoots:
        return self._current_roots(ROOTS_REFRESH_S)

    def _current_roots(self, max_age: float) -> StateRoots:
        """The roots, discovered again when older than max_age seconds."""
        if self._fixed is not None:
            return self._fixed
        now = self.clock()
        if self._roots is None or now - self._roots_at >= max_age:
            try:
                self._roots = self._discover()
            except OSError:
                self._roots = self._roots or DEFAULT_ROOTS
            self._roots_at = now
        return self._roots

    def learn_pod(self, uid: str, name: str, namespace: str | None) -> None:
        """A pod's uid (from a cgroup path) names this pod (from a container's state)."""
        with self._lock:
            self._pods[uid] = (name, namespace)
            self._pods.move_to_end(uid)
            while len(self._pods) > self.max_entries:
                self._pods.popitem(last=False)

    def pod(self, uid: str) -> tuple[str, str | None] | None:
        """(name, namespace) of a pod whose containers were seen, else None."""
        return self._pods.get(uid)

    def cached(self, container_id: str) -> ContainerInfo | None:
        """What is known about a container without reading anything."""
        return self._found.get(container_id)

    def known(self) -> Iterable[tuple[str, ContainerInfo]]:
        return list(self._found.items())

    def lookup(self, runtime: str | None, container_id: str | None) -> ContainerInfo | None:
        """The container's names, or None (unknown, or not readable yet)."""
        if not container_id or not _ID.fullmatch(container_id):
            return None
        with self._lock:
            info = self._found.get(container_id)
            if info is not None:
                self._found.move_to_end(container_id)
                return info
            now = self.clock()
            miss = self._missed.get(container_id)
            if miss is not None and now < miss.next_try:
                return None
            self.reads += 1
            info = self._read(runtime, container_id)
            if info is None:
                tries = miss.tries + 1 if miss else 1
                self._missed[container_id] = _Miss(now + min(self.retry_s * 2 ** (tries - 1), MAX_RETRY_S), tries)
                self._missed.move_to_end(container_id)
                while len(self._missed) > self.max_entries:
                    self._missed.popitem(last=False)
                return None
            self._remember(container_id, info)
            return info

    def _remember(self, container_id: str, info: ContainerInfo) -> None:
        self._missed.pop(container_id, None)
        self._found[container_id] = info
        self._found.move_to_end(container_id)
        while len(self._found) > self.max_entries:
            self._found.popitem(last=False)

    # -- priming: what StateWatcher calls as a runtime writes its state -------------

    def prime(self, store: str, root: str, container_id: str) -> bool:
        """Read one container's state from one root of a store ("docker", "containerd"); True once cached."""
        if not _ID.fullmatch(container_id):
            return True     # not a container: nothing to wait for
        with self._lock:
            if container_id in self._found:
                return True
            try:
                if store == "docker":
                    info = self._read_docker((root,), container_id)
                else:
                    info = self._read_containerd((root,), container_id)
            except (OSError, ValueError, TypeError, AttributeError):
                info = None
            if info is not None:
                self._remember(container_id, info)
            return info is not None

    def prime_storage(self, store: str, complete_only: bool = True) -> list[str]:
        """Cache every new container of a containers/storage store (``<root>/<driver>-containers``).

        The ids still waiting for their ``userdata/config.json`` (complete_only)
        are returned, to be asked again.
        """
        waiting = []
        with self._lock:
            try:
                self._storage_entry(store, "")
                entries = dict(self._storage.get(f"{store}/containers.json", _StorageIndex()).entries)
            except (OSError, ValueError, TypeError, AttributeError):
                return waiting
            for cid, entry in entries.items():
                if not isinstance(cid, str) or cid in self._found or not _ID.fullmatch(cid):
                    continue
                oci = _read_json(f"{store}/{cid}/userdata/config.json")
                if oci is None and complete_only:
                    waiting.append(cid)
                    continue
                try:
                    info = storage_info(entry, oci)
                except (ValueError, TypeError, AttributeError):
                    info = None
                if info is not None:
                    self._remember(cid, info)
        return waiting

    def _read(self, runtime: str | None, container_id: str) -> ContainerInfo | None:
        roots = self.roots
        info = self._read_roots(roots, runtime, container_id)
        if info is None and self._current_roots(MISS_REFRESH_S) != roots:
            # a daemon started (or moved its root) since the roots were last looked for
            info = self._read_roots(self._roots, runtime, container_id)
        return info

    def _read_roots(self, roots: StateRoots, runtime: str | None, container_id: str) -> ContainerInfo | None:
        order = _ORDER.get(runtime or "", ())
        order = order + tuple(s for s in _ALL if s not in order) if runtime not in (
            "podman-conmon", "crio-conmon") else order
        for store in order:
            try:
                if store == "docker":
                    info = self._read_docker(roots.docker, container_id)
                elif store == "storage":
                    info = self._read_storage(roots.storage, container_id)
                else:
                    info = self._read_containerd(roots.containerd, container_id)
            except (OSError, ValueError, TypeError, AttributeError):
                info = None
            if info is not None:
                return info
        return None

    @staticmethod
    def _read_docker(roots: Iterable[str], cid: str) -> ContainerInfo | None:
        for root in roots:
            config = _read_json(f"{root}/containers/{cid}/config.v2.json")
            if config is not None:
                info = docker_info(config)
                if info is not None:
                    return info
        return None

    @staticmethod
    def _read_containerd(roots: Iterable[str], cid: str) -> ContainerInfo | None:
        for root in roots:
            try:
                runtimes = [d for d in os.listdir(root) if d.startswith("io.containerd.runtime.")]
            except OSError:
                continue
            for rt in runtimes:
                try:
                    namespaces = os.listdir(f"{root}/{rt}")
                except OSError:
                    continue
                for ns in namespaces:
                    config = _read_json(f"{root}/{rt}/{ns}/{cid}/config.json")
                    if config is not None:
                        info = oci_info(config)
                        if info is not None:
                            return info
        return None

    def _read_storage(self, roots: Iterable[str], cid: str) -> ContainerInfo | None:
        for root in roots:
            try:
                stores = [d for d in os.listdir(root) if d.endswith("-containers")]
            except OSError:
                continue
            for store in stores:
                entry = self._storage_entry(f"{root}/{store}", cid)
                oci = _read_json(f"{root}/{store}/{cid}/userdata/config.json")
                if entry is None and oci is None:
                    continue
                info = storage_info(entry or {}, oci)
                if info is not None:
                    return info
        return None

    def _storage_entry(self, store: str, cid: str) -> dict | None:
        """``containers.json``'s entry for ``cid``, the file parsed again only when it changed."""
        path = f"{store}/containers.json"
        try:
            st = os.stat(path)
        except OSError:
            return None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        index = self._storage.setdefault(path, _StorageIndex())
        if index.stamp != stamp:
            data = _read_json(path)
            if not isinstance(data, list):
                return None   # half-written: keep the old index, parse again next time
            index.entries = {e.get("id"): e for e in data if isinstance(e, dict)}
            index.stamp = stamp
        return index.entries.get(cid)


def with_runtime(names: Names, runtimes: Runtimes | None = None, read: bool = True) -> Names:
    """names with the container's name, image and pod added from its runtime's state, where they can be
    read (read=False: only what is cached already -- no I/O, for the model and the views)."""
    if names.container_name is not None or names.pod_name is not None:
        return names
    runtimes = runtimes or shared()
    if names.container_id is None:
        # a pod's own cgroup (kubepods...pod<uid>): named by the containers of the pod seen so far
        pod = runtimes.pod(names.pod) if names.pod else None
        return replace(names, pod_name=pod[0], pod_namespace=pod[1]) if pod else names
    info = runtimes.lookup(names.runtime, names.container_id) if read else runtimes.cached(names.container_id)
    if info is None:
        return names
    if names.pod and info.pod_name:
        runtimes.learn_pod(names.pod, info.pod_name, info.pod_namespace)
    return replace(names, container_name=info.name, image=info.image, pod_name=info.pod_name,
                   pod_namespace=info.pod_namespace)


def runtime_names(names: Names) -> dict:
    """The runtime's names as record keys (JSON, report rows, cgroups): container_name, image, pod_name,
    pod_namespace."""
    return {"container_name": names.container_name, "image": names.image, "pod_name": names.pod_name,
            "pod_namespace": names.pod_namespace}


def named(path: str, runtimes: Runtimes | None = None, read: bool = True) -> Names:
    """What a cgroup path says about its owner, with the runtime's names where they can be read
    (read=False: where the session has read them already)."""
    return with_runtime(_path_names(path), runtimes, read)


_path_names = functools.lru_cache(maxsize=4096)(names_from_path)
_shared: Runtimes | None = None


def shared() -> Runtimes:
    """The process's one cache of runtime state: the session fills it, the views read names from it."""
    global _shared
    if _shared is None:
        _shared = Runtimes()
    return _shared
