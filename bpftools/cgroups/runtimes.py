"""Container, image and pod names from the container runtimes' own state files.

A cgroup path gives a container's runtime and id (``names.py``); the names
people use -- ``web-1``, ``nginx:1.27``, pod ``shop/checkout-7d9c`` -- are in
the files each runtime keeps on disk.  They are read here directly, without
talking to a daemon or a socket:

* docker: ``<data-root>/containers/<id>/config.v2.json`` (``Name``,
  ``Config.Image``, ``Config.Labels``; Kubernetes labels when dockershim or
  cri-dockerd made it);
* podman (and anything else on containers/storage): ``<graphroot>/<driver>-containers/containers.json``
  (``names``, ``metadata`` -> ``image-name``) and ``<id>/userdata/config.json``;
* containerd: the task bundle ``<state>/io.containerd.runtime.v2.task/<namespace>/<id>/config.json``
  with the CRI plugin's ``io.kubernetes.cri.*`` annotations (``container-name``,
  ``sandbox-name``, ``sandbox-namespace``, ``image-name``);
* CRI-O: the ``io.kubernetes.cri-o.*`` annotations of the same OCI
  ``config.json`` in containers/storage (``Labels``, ``Metadata``, ``ImageName``).

Where each runtime keeps its state is taken from its own configuration:
``/etc/docker/daemon.json`` (``data-root``), ``/etc/containers/storage.conf``
(``graphroot``, ``runroot``), ``/etc/containerd/config.toml`` (``state``),
and the command lines of the running ``dockerd``, ``containerd``, ``crio``
and ``conmon`` processes (``--data-root``, ``--config-file``, ``--state``,
``--config``, ``--root``, ``--runroot``), so a moved root is found whether it
was moved by a config file or a flag.

What is found is cached per container id and kept (up to ``max_entries``,
least recently used forgotten first), so events from a container that has
already been removed -- ``podman run --rm`` -- still get its name once it was
read.  State that cannot be read or parsed (a container being created, a file
half-written) is a miss, asked for again after ``retry_s`` seconds, then
twice as long each time up to ``MAX_RETRY_S``: a container's state is
usually complete a few milliseconds after its cgroup appears.  A miss is
never an error.
"""

from __future__ import annotations

import functools
import json
import os
import re
import select
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from bpftools.cgroups.names import Names, names_from_path
from bpftools.kernel import inotify

try:  # Python 3.11+
    import tomllib as _toml
except ImportError:  # pragma: no cover - Python 3.10
    _toml = None

DEFAULT_MAX_ENTRIES = 4096
DEFAULT_RETRY_S = 0.05    # the first retry; then twice as long each time, up to MAX_RETRY_S
MAX_RETRY_S = 5.0
ROOTS_REFRESH_S = 5.0
MISS_REFRESH_S = 0.5       # after a miss, roots older than this are looked for again
_MAX_STATE_BYTES = 8 << 20     # a state file bigger than this is not one we want to parse

CRI = "io.kubernetes.cri."
CRIO = "io.kubernetes.cri-o."
K8S_CONTAINER = "io.kubernetes.container.name"
K8S_POD = "io.kubernetes.pod.name"
K8S_NAMESPACE = "io.kubernetes.pod.namespace"


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """What a runtime's state says about one container; any name may be None."""

    name: str | None = None           # "web-1"; a Kubernetes container's name in its pod
    image: str | None = None          # "nginx:1.27", "localhost/img:latest"
    pod_name: str | None = None       # Kubernetes pod name
    pod_namespace: str | None = None  # Kubernetes namespace
    source: str | None = None         # "docker", "podman", "containerd", "cri-o"

    @property
    def pod(self) -> str | None:
        """``namespace/name`` as ``kubectl`` spells a pod, or None."""
        if self.pod_name is None:
            return None
        return f"{self.pod_namespace}/{self.pod_name}" if self.pod_namespace else self.pod_name


# -- parsing one state file (pure) ------------------------------------------


def _str(value) -> str | None:
    return value if isinstance(value, str) and value else None


def _json_object(text) -> dict:
    """A JSON object embedded as a string (annotations, podman's metadata), or {}."""
    if isinstance(text, dict):
        return text
    if not isinstance(text, str) or not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _kubernetes(labels: dict) -> tuple[str | None, str | None, str | None]:
    """(container, pod, namespace) from the labels kubelet puts on every container."""
    return _str(labels.get(K8S_CONTAINER)), _str(labels.get(K8S_POD)), _str(labels.get(K8S_NAMESPACE))


def docker_info(config: dict) -> ContainerInfo | None:
    """A docker ``config.v2.json``: the name without its "/", the image as given to ``docker run``."""
    if not isinstance(config, dict):
        return None
    conf = config.get("Config") if isinstance(config.get("Config"), dict) else {}
    name = _str(config.get("Name"))
    if name:
        name = name.lstrip("/") or None
    image = _str(conf.get("Image")) or _str(config.get("Image"))
    labels = conf.get("Labels") if isinstance(conf.get("Labels"), dict) else {}
    k8s_name, pod, namespace = _kubernetes(labels)
    if name is None and image is None:
        return None
    return ContainerInfo(k8s_name or name, image, pod, namespace, "docker")


def oci_info(config: dict) -> ContainerInfo | None:
    """An OCI runtime ``config.json`` whose annotations name the container (CRI or CRI-O), else None."""
    if not isinstance(config, dict):
        return None
    notes = config.get("annotations")
    if not isinstance(notes, dict):
        return None
    if CRI + "container-type" in notes or CRI + "sandbox-name" in notes:
        sandbox = notes.get(CRI + "container-type") == "sandbox"
        return ContainerInfo(
            None if sandbox else _str(notes.get(CRI + "container-name")),
            _str(notes.get(CRI + "image-name")),
            _str(notes.get(CRI + "sandbox-name")),
            _str(notes.get(CRI + "sandbox-namespace")),
            "containerd",
        )
    if CRIO + "ContainerType" in notes or CRIO + "Labels" in notes:
        # podman writes CRIO + "Created" and "TTY" too, but never these.
        sandbox = notes.get(CRIO + "ContainerType") == "sandbox"
        k8s_name, pod, namespace = _kubernetes(_json_object(notes.get(CRIO + "Labels")))
        meta = _json_object(notes.get(CRIO + "Metadata"))
        name = None if sandbox else (k8s_name or _str(meta.get("name")))
        pod = pod or _str(notes.get(CRIO + "KubeName")) or _str(notes.get(K8S_POD))
        namespace = namespace or _str(notes.get(CRIO + "Namespace")) or _str(notes.get(K8S_NAMESPACE))
        image = _str(notes.get(CRIO + "ImageName")) or _str(notes.get(CRIO + "Image"))
        return ContainerInfo(name, image, pod, namespace, "cri-o")
    return None


def storage_info(entry: dict, oci: dict | None = None) -> ContainerInfo | None:
    """A containers/storage ``containers.json`` entry (podman, buildah, CRI-O), with its OCI config if read."""
    annotated = oci_info(oci) if oci is not None else None
    if annotated is not None:
        return annotated
    if not isinstance(entry, dict):
        return None
    names = entry.get("names")
    name = _str(names[0]) if isinstance(names, list) and names else None
    meta = _json_object(entry.get("metadata"))
    name = name or _str(meta.get("name"))
    image = _str(meta.get("image-name")) or _str(entry.get("image"))
    if name is None and image is None:
        return None
    return ContainerInfo(name, image, None, None, "podman")


# -- where the state is (configuration and command lines) -------------------


@dataclass(frozen=True)
class StateRoots:
    """Directories to look in, most specific first."""

    docker: tuple[str, ...] = ()       # data-roots: <root>/containers/<id>/config.v2.json
    storage: tuple[str, ...] = ()      # containers/storage graphroots and runroots
    containerd: tuple[str, ...] = ()   # containerd state dirs: <state>/io.containerd.runtime.v*.*/<ns>/<id>

    def merged(self, other: StateRoots) -> StateRoots:
        return StateRoots(*(tuple(dict.fromkeys(a + b)) for a, b in
                            ((self.docker, other.docker), (self.storage, other.storage),
                             (self.containerd, other.containerd))))


DEFAULT_ROOTS = StateRoots(
    docker=("/var/lib/docker",),
    storage=("/var/lib/containers/storage", "/run/containers/storage"),
    containerd=("/run/containerd", "/run/docker/containerd/daemon"),
)


def _read_text(path: str, limit: int = _MAX_STATE_BYTES) -> str | None:
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError:
        return None
    if len(data) > limit:
        return None
    return data.decode("utf-8", "replace")


def _read_json(path: str):
    text = _read_text(path)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None     # half-written or not JSON: a miss, tried again later


def toml_string(text: str, table: str | None, key: str) -> str | None:
    """The string value of ``key`` in ``[table]`` (None: before any table) of a TOML text, or None."""
    if _toml is not None:
        try:
            doc = _toml.loads(text)
        except ValueError:
            doc = None
        if doc is not None:
            scope = doc if table is None else doc.get(table)
            value = scope.get(key) if isinstance(scope, dict) else None
            return value if isinstance(value, str) and value else None
    current = None   # the simple subset: [table] headers, key = "string"
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            current = line.strip("[] ")
            continue
        m = re.fullmatch(r'([A-Za-z0-9_.-]+)\s*=\s*"([^"]*)"\s*(#.*)?', line)
        if m and m.group(1) == key and current == table:
            return m.group(2) or None
    return None


def _flag(argv: list[str], *names: str) -> str | None:
    """The value of the last ``--name value`` or ``--name=value`` in a command line."""
    value = None
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                value = argv[i + 1]
            elif arg.startswith(name + "="):
                value = arg[len(name) + 1:]
    return value


def _docker_roots_from_config(text: str | None) -> list[str]:
    conf = _json_object(text) if text else {}
    root = _str(conf.get("data-root")) or _str(conf.get("graph"))
    return [root] if root else []


def _storage_roots_from_config(text: str | None) -> list[str]:
    if not text:
        return []
    return [r for r in (toml_string(text, "storage", "graphroot"), toml_string(text, "storage", "runroot")) if r]


def _containerd_roots_from_config(text: str | None) -> list[str]:
    if not text:
        return []
    state = toml_string(text, None, "state")
    return [state] if state else []


def roots_from_config(etc: str = "/etc", environ: dict | None = None) -> StateRoots:
    """The roots the runtimes' configuration files name (not the defaults)."""
    environ = os.environ if environ is None else environ
    storage_conf = [environ.get("CONTAINERS_STORAGE_CONF"), f"{etc}/containers/storage.conf"]
    storage: list[str] = []
    for path in filter(None, storage_conf):
        storage += _storage_roots_from_config(_read_text(path))
    return StateRoots(
        docker=tuple(_docker_roots_from_config(_read_text(f"{etc}/docker/daemon.json"))),
        storage=tuple(storage),
        containerd=tuple(_containerd_roots_from_config(_read_text(f"{etc}/containerd/config.toml"))),
    )


def roots_from_command_line(argv: list[str], read: Callable[[str], str | None] = _read_text) -> StateRoots:
    """The roots one runtime daemon's command line names (directly or through its config file)."""
    if not argv:
        return StateRoots()
    prog = os.path.basename(argv[0])
    if prog == "dockerd":
        roots = [r for r in (_flag(argv, "--data-root", "-g", "--graph"),) if r]
        config = _flag(argv, "--config-file")
        if config:
            roots += _docker_roots_from_config(read(config))
        exec_root = _flag(argv, "--exec-root")
        managed = [f"{exec_root}/containerd/daemon"] if exec_root else []
        return StateRoots(docker=tuple(roots), containerd=tuple(managed))
    if prog == "containerd":
        roots = [r for r in (_flag(argv, "--state"),) if r]
        config = _flag(argv, "--config", "-c")
        if config:
            roots += _containerd_roots_from_config(read(config))
        return StateRoots(containerd=tuple(roots))
    if prog in ("crio", "podman", "conmon"):
        # conmon carries podman's --root/--runroot as "--exit-command-arg <arg>" pairs.
        args = argv
        if prog == "conmon":
            args = [argv[i + 1] for i in range(len(argv) - 1) if argv[i] == "--exit-command-arg"]
        roots = [r for r in (_flag(args, "--root"), _flag(args, "--runroot")) if r]
        return StateRoots(storage=tuple(roots))
    return StateRoots()


_DAEMONS = {"dockerd", "containerd", "crio", "conmon"}


def roots_from_processes(proc: str = "/proc") -> StateRoots:
    """The roots the running runtime daemons were started with."""
    found = StateRoots()
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        comm = _read_text(f"{proc}/{pid}/comm", 64)
        if comm is None or comm.strip() not in _DAEMONS:
            continue
        raw = _read_text(f"{proc}/{pid}/cmdline", 1 << 16)
        if raw:
            found = found.merged(roots_from_command_line(raw.rstrip("\0").split("\0")))
    return found


def discover_roots(etc: str = "/etc", proc: str = "/proc") -> StateRoots:
    """Configured and running roots first, then the defaults."""
    return roots_from_processes(proc).merged(roots_from_config(etc)).merged(DEFAULT_ROOTS)


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


# -- watching the runtimes write -------------------------------------------------

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
