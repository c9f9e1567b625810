"""What the container runtimes' state files say, and where they are: parsers and roots.

A cgroup path gives a container's runtime and id (``names.py``); the names
people use -- ``web-1``, ``nginx:1.27``, pod ``shop/checkout-7d9c`` -- are in
the files each runtime keeps on disk.  This module knows those files:

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

The cache of what was read is ``runtimes.py``; the thread that reads state as
it is written is ``runtime_watch.py``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

try:  # Python 3.11+
    import tomllib as _toml
except ImportError:  # pragma: no cover - Python 3.10
    _toml = None

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
