"""Names people use for a cgroup, derived from its path alone.

A cgroup path here is relative to the cgroup2 root and starts with "/", e.g.
``/system.slice/nginx.service`` or
``/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope``.
Everything is pure string matching on path components; the innermost match
wins, and a cgroup below a container's or unit's cgroup (a delegated
sub-cgroup) keeps that container or unit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SHORT_ID_LEN = 12  # as `docker ps` shows container ids

_UNIT_SUFFIXES = (".service", ".scope", ".socket", ".mount", ".swap")
_HEX64 = "[0-9a-f]{64}"

# Path component -> runtime, for components that name a container themselves.
_CONTAINER_COMPONENTS = (
    (re.compile(rf"docker-({_HEX64})\.scope"), "docker"),
    (re.compile(rf"cri-containerd-({_HEX64})\.scope"), "containerd"),
    (re.compile(rf"crio-conmon-({_HEX64})(?:\.scope)?"), "crio-conmon"),
    (re.compile(rf"crio-({_HEX64})(?:\.scope)?"), "crio"),
    (re.compile(rf"libpod-conmon-({_HEX64})(?:\.scope)?"), "podman-conmon"),
    (re.compile(rf"libpod-payload-({_HEX64})"), "podman"),
    (re.compile(rf"libpod-({_HEX64})(?:\.scope)?"), "podman"),
    # containerd's cgroupfs form of a systemd cgroups path, "<slice>:cri-containerd:<id>".
    (re.compile(rf"[^:]+\.slice:cri-containerd:({_HEX64})"), "containerd"),
)
_BARE_ID = re.compile(_HEX64)
# kubelet, systemd driver: kubepods[-<qos>]-pod<uid with _ for ->.slice (also the
# "<slice>:cri-containerd:<id>" form above starts with it).
_POD_SLICE = re.compile(r"kubepods(?:-[a-z]+)?-pod([0-9a-f_]+)\.slice(?::.*)?")
# kubelet, cgroupfs driver: /kubepods[/<qos>]/pod<uid>.
_POD_DIR = re.compile(r"pod([0-9a-f-]+)")


@dataclass(frozen=True, slots=True)
class Names:
    """What a cgroup path says about its owner; any field may be None."""

    unit: str | None = None          # innermost systemd unit: "nginx.service", "session-2.scope"
    slice: str | None = None         # innermost systemd slice: "system.slice"
    container: str | None = None     # "<runtime>:<short id>", e.g. "docker:3f2a1b4c5d6e"
    runtime: str | None = None       # docker, containerd, crio, crio-conmon, podman, podman-conmon, cri
    container_id: str | None = None  # the full id
    pod: str | None = None           # Kubernetes pod uid, dashed
    # From the runtime's own state (cgroups/runtime_state.py via the cache in runtimes.py), never from
    # the path: None until read.
    container_name: str | None = None  # "web-1"
    image: str | None = None           # "nginx:1.27"
    pod_name: str | None = None        # "checkout-7d9c"
    pod_namespace: str | None = None   # "shop"

    @property
    def pod_label(self) -> str | None:
        """A pod as kubectl spells it (namespace/name), else its uid, else None."""
        if self.pod_name:
            return "%s/%s" % (self.pod_namespace, self.pod_name) if self.pod_namespace else self.pod_name
        return self.pod


def short_id(container_id: str) -> str:
    """A container id as users know it (its first 12 characters)."""
    return container_id[:SHORT_ID_LEN]


def names_from_path(path: str) -> Names:
    """The systemd unit and slice, container and Kubernetes pod a cgroup path belongs to."""
    unit = slice_ = runtime = container_id = pod = None
    parent = ""
    in_kubepods = False
    for part in path.split("/"):
        if not part:
            continue
        if part.endswith(_UNIT_SUFFIXES):
            unit = part
        elif part.endswith(".slice"):
            slice_ = part
        if part == "kubepods" or part.startswith("kubepods."):
            in_kubepods = True
        match = _POD_SLICE.fullmatch(part) or (in_kubepods and _POD_DIR.fullmatch(part))
        if match:
            pod = match.group(1).replace("_", "-")
        found = _container_of(part, parent, in_kubepods)
        if found:
            runtime, container_id = found
        parent = part
    container = f"{runtime}:{short_id(container_id)}" if container_id else None
    return Names(unit, slice_, container, runtime, container_id, pod)


def _container_of(part: str, parent: str, in_kubepods: bool) -> tuple[str, str] | None:
    for pattern, runtime in _CONTAINER_COMPONENTS:
        match = pattern.fullmatch(part)
        if match:
            return runtime, match.group(1)
    if _BARE_ID.fullmatch(part):
        if parent == "docker":  # docker's cgroupfs driver: /docker/<id>
            return "docker", part
        if in_kubepods and _POD_DIR.fullmatch(parent):  # kubelet cgroupfs: .../pod<uid>/<id>
            return "cri", part
    return None


def display_name(path: str, names: Names | None = None) -> str:
    """The compact name the views show: the container's name or runtime:short-id, else the pod, else
    the unit, else the path."""
    if names is None:
        names = names_from_path(path)
    if names.container_name:
        return f"{names.pod_label}/{names.container_name}" if names.pod_name else names.container_name
    if names.container:
        return names.container
    if names.pod_name:
        return "pod:" + names.pod_label
    if names.pod:
        return f"pod:{names.pod}"
    return names.unit or path
