"""Which cgroups a user selected, decided in one place for every command.

Cgroup paths are relative to the cgroup2 root and start with "/".  A
selection (``--cgroup``, ``export --include/--exclude``) names a subtree by
its path, by its id, or by a glob that matches the path of the subtree's
root ("system.slice/*.service", the leading "/" optional).
"""
from __future__ import annotations

import fnmatch

UNKNOWN_PREFIX = "/unknown:"       # the path of a cgroup id nobody could resolve


def unknown_path(cgid: int) -> str:
    return "%s%d" % (UNKNOWN_PREFIX, cgid)


def ancestors(path: str) -> list[str]:
    """"/a/b/c" -> ["/", "/a", "/a/b"]; "/" has none."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return []
    return ["/"] + ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


def within(path: str, root: str) -> bool:
    """Is path (a cgroup or a file) inside, or equal to, root?"""
    return root == "/" or path == root or path.startswith(root.rstrip("/") + "/")


def is_glob(spec: str) -> bool:
    return any(c in spec for c in "*?[")


def glob_selects(glob: str, path: str) -> bool:
    """Does a glob match the path or an ancestor of it?"""
    pattern = "/" + glob.strip("/")
    return any(fnmatch.fnmatchcase(p, pattern) for p in ancestors(path) + [path])


def glob_root(glob: str) -> str:
    """The fixed part of a glob: the subtree every match lies in ("a/b*/c" -> "/a")."""
    parts = glob.strip("/").split("/")
    return "/" + "/".join(parts[:next(i for i, part in enumerate(parts) if is_glob(part))])


def level_of(path: str) -> int:
    """How deep a cgroup sits: "/" is 0, "/a/b" is 2."""
    return len([p for p in path.split("/") if p])


def split_specs(specs, mount: str | None) -> tuple[list[str], list[int], list[str]]:
    """--cgroup values -> (subtree paths relative to the root, ids, globs)."""
    paths, ids, globs = [], [], []
    for spec in specs:
        if spec.isdigit():
            ids.append(int(spec))
        elif is_glob(spec):
            globs.append(spec.strip("/"))
        else:
            rel = spec
            if mount and (spec == mount or spec.startswith(mount.rstrip("/") + "/")):
                rel = spec[len(mount.rstrip("/")):]
            paths.append("/" + rel.strip("/") if rel.strip("/") else "/")
    return paths, ids, globs


def container_selects(spec: str, names) -> bool:
    """Does --container SPEC name this container: its name, runtime:short-id, or a prefix of its id?"""
    if not names.container_id:
        return False
    if spec == names.container_name or spec == names.container:
        return True
    return len(spec) >= 4 and names.container_id.startswith(spec.lower())


def pod_selects(spec: str, names) -> bool:
    """Does --pod SPEC name this pod: NAMESPACE/NAME, a NAME in any namespace, or its uid?"""
    if spec == names.pod:
        return names.pod is not None
    if not names.pod_name:
        return False
    namespace, _, name = spec.rpartition("/")
    return name == names.pod_name and (not namespace or namespace == names.pod_namespace)
