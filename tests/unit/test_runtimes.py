"""Container names from runtime state files: real files, captured from real runs.

tests/unit/data/runtimes/ holds state written by the runtimes themselves on
this machine kind (docker 20.10 with containerd 1.6, podman 4.3, `ctr run`
with the annotations containerd's CRI plugin sets), with the temporary roots
they ran under rewritten to the default ones.  The CRI-O annotations are
built here from CRI-O's documented keys: no CRI-O package exists to run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from bpftools.cgroups import runtime_state as st
from bpftools.cgroups import runtimes as rt
from bpftools.cgroups.names import names_from_path
from bpftools.cgroups.runtime_state import ContainerInfo, StateRoots
from bpftools.cgroups.runtime_watch import StateWatcher
from bpftools.cgroups.runtimes import Runtimes

DATA = Path(__file__).parent / "data" / "runtimes"
DOCKER_ID = "7c8d740bcbf45a66ea188d63c184cad11a3467fdb94104ca0468627fa020951c"
PODMAN_ID = "2fa2f8142affbd85260e8cd0053522a4113787e130017308701174179a59ffab"
CRI_ID = "9105a31c9bc9375f23509d0eb3ab3855a49dc6f07216df44a439a834b0b5f550"


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def load(name):
    return json.loads((DATA / name).read_text())


def docker_root(tmp_path, cid=DOCKER_ID, text=None):
    root = tmp_path / "docker"
    d = root / "containers" / cid
    d.mkdir(parents=True)
    (d / "config.v2.json").write_text(text if text is not None else (DATA / "docker-config.v2.json").read_text())
    return root


def storage_root(tmp_path, driver="overlay"):
    root = tmp_path / "storage"
    store = root / f"{driver}-containers"
    (store / PODMAN_ID / "userdata").mkdir(parents=True)
    shutil.copy(DATA / "podman-containers.json", store / "containers.json")
    shutil.copy(DATA / "podman-userdata-config.json", store / PODMAN_ID / "userdata" / "config.json")
    return root


def containerd_state(tmp_path, cid=CRI_ID, ns="k8s.io", config="cri-bundle-config.json"):
    state = tmp_path / "containerd"
    bundle = state / "io.containerd.runtime.v2.task" / ns / cid
    bundle.mkdir(parents=True)
    shutil.copy(DATA / config, bundle / "config.json")
    return state


# -- the parsers ---------------------------------------------------------------


def test_docker_config_v2():
    info = st.docker_info(load("docker-config.v2.json"))
    assert info == ContainerInfo("fstrace-proto-4", "fstrace-test-img:1", None, None, "docker")


def test_docker_kubernetes_labels_name_the_pod():
    config = load("docker-config.v2.json")
    config["Name"] = "/k8s_web_checkout-7d9c_shop_0c0e_0"
    config["Config"]["Labels"] = {st.K8S_CONTAINER: "web", st.K8S_POD: "checkout-7d9c", st.K8S_NAMESPACE: "shop"}
    info = st.docker_info(config)
    assert (info.name, info.pod_name, info.pod_namespace) == ("web", "checkout-7d9c", "shop")
    assert info.pod == "shop/checkout-7d9c"


def test_containerd_cri_annotations():
    info = st.oci_info(load("cri-bundle-config.json"))
    assert info == ContainerInfo("web", "registry.example/shop/web:1.2", "checkout-7d9c", "shop", "containerd")


def test_cri_sandbox_has_a_pod_but_no_container_name():
    config = load("cri-bundle-config.json")
    config["annotations"]["io.kubernetes.cri.container-type"] = "sandbox"
    info = st.oci_info(config)
    assert (info.name, info.pod) == (None, "shop/checkout-7d9c")


def test_a_bundle_without_names_is_not_an_answer():
    # docker's own task bundle (namespace "moby") carries no names: config.v2.json does.
    assert st.oci_info(load("docker-bundle-config.json")) is None


def test_podman_oci_config_is_not_mistaken_for_cri_o():
    # podman writes io.kubernetes.cri-o.Created and .TTY; those do not make it CRI-O.
    assert st.oci_info(load("podman-userdata-config.json")) is None


def test_podman_containers_json_entry():
    entry = load("podman-containers.json")[0]
    info = st.storage_info(entry, load("podman-userdata-config.json"))
    assert info == ContainerInfo("fstrace-proto-2", "localhost/fstrace-test-img:latest", None, None, "podman")


CRIO_ANNOTATIONS = {
    "io.kubernetes.cri-o.ContainerType": "container",
    "io.kubernetes.cri-o.ContainerName": "k8s_web_checkout-7d9c_shop_1f6a_0",
    "io.kubernetes.cri-o.ImageName": "docker.io/library/nginx:1.27",
    "io.kubernetes.cri-o.Labels": json.dumps({st.K8S_CONTAINER: "web", st.K8S_POD: "checkout-7d9c",
                                               st.K8S_NAMESPACE: "shop"}),
    "io.kubernetes.cri-o.Metadata": json.dumps({"name": "web", "attempt": 0}),
    "io.kubernetes.cri-o.SandboxName": "k8s_POD_checkout-7d9c_shop_1f6a_0",
}


def test_cri_o_annotations():
    info = st.oci_info({"annotations": CRIO_ANNOTATIONS})
    assert info == ContainerInfo("web", "docker.io/library/nginx:1.27", "checkout-7d9c", "shop", "cri-o")


def test_cri_o_sandbox_named_by_kube_name():
    notes = {"io.kubernetes.cri-o.ContainerType": "sandbox", "io.kubernetes.cri-o.KubeName": "checkout-7d9c",
             "io.kubernetes.cri-o.Namespace": "shop", "io.kubernetes.cri-o.Labels": "{not json"}
    info = st.oci_info({"annotations": notes})
    assert (info.name, info.pod, info.source) == (None, "shop/checkout-7d9c", "cri-o")


@pytest.mark.parametrize("junk", [None, [], "x", {"Config": "x"}, {"annotations": []}, {}])
def test_parsers_take_junk_without_raising(junk):
    assert st.docker_info(junk) is None
    assert st.oci_info(junk) is None
    assert st.storage_info(junk) is None


# -- where the state is ----------------------------------------------------------


def test_roots_from_the_runtimes_config_files(tmp_path):
    etc = tmp_path / "etc"
    (etc / "docker").mkdir(parents=True)
    (etc / "docker" / "daemon.json").write_text('{"data-root": "/srv/docker", "log-driver": "local"}')
    (etc / "containers").mkdir()
    (etc / "containers" / "storage.conf").write_text(
        '[storage]\ndriver = "overlay"\nrunroot = "/run/cs"\ngraphroot = "/srv/containers"  # moved\n'
        '[storage.options]\nmount_program = "/usr/bin/fuse-overlayfs"\n')
    (etc / "containerd").mkdir()
    (etc / "containerd" / "config.toml").write_text(
        'version = 2\nroot = "/srv/containerd"\nstate = "/run/ctd"\n[grpc]\n  address = "/run/ctd.sock"\n')
    roots = st.roots_from_config(str(etc), environ={})
    assert roots == StateRoots(("/srv/docker",), ("/srv/containers", "/run/cs"), ("/run/ctd",))


def test_storage_conf_named_by_the_environment(tmp_path):
    conf = tmp_path / "storage.conf"
    conf.write_text('[storage]\ngraphroot = "/g"\n')
    roots = st.roots_from_config(str(tmp_path / "none"), environ={"CONTAINERS_STORAGE_CONF": str(conf)})
    assert roots.storage == ("/g",)


def test_missing_or_broken_config_files_name_nothing(tmp_path):
    etc = tmp_path / "etc"
    (etc / "docker").mkdir(parents=True)
    (etc / "docker" / "daemon.json").write_text('{"data-root": ')
    assert st.roots_from_config(str(etc), environ={}) == StateRoots()


def test_toml_subset_without_tomllib(monkeypatch):
    monkeypatch.setattr(st, "_toml", None)
    text = 'version = 2\nstate = "/run/x"\n[storage]\ngraphroot = "/g" # c\n'
    assert st.toml_string(text, None, "state") == "/run/x"
    assert st.toml_string(text, "storage", "graphroot") == "/g"
    assert st.toml_string(text, "storage", "state") is None


# Command lines as the daemons ran on this machine.
DOCKERD = ("dockerd --containerd=/tmp/t/containerd.sock --data-root /tmp/t/data --exec-root /tmp/t/exec "
           "--pidfile /tmp/t/dockerd.pid -H unix:///tmp/t/docker.sock --iptables=false --bridge=none").split()
CONMON = ("/usr/bin/conmon --api-version 1 -c 1093d5 -u 1093d5 -r /usr/bin/runc "
          "-b /srv/s/overlay-containers/1093d5/userdata --exit-command /usr/bin/podman "
          "--exit-command-arg --root --exit-command-arg /srv/s --exit-command-arg --runroot "
          "--exit-command-arg /run/s --exit-command-arg --log-level --exit-command-arg warning").split()


def test_roots_from_daemon_command_lines(tmp_path):
    assert st.roots_from_command_line(DOCKERD) == StateRoots(
        docker=("/tmp/t/data",), containerd=("/tmp/t/exec/containerd/daemon",))
    assert st.roots_from_command_line(CONMON) == StateRoots(storage=("/srv/s", "/run/s"))
    conf = tmp_path / "containerd.toml"
    conf.write_text('version = 2\nstate = "/tmp/t/state"\n')
    assert st.roots_from_command_line(["/usr/bin/containerd", "--config", str(conf)]) == StateRoots(
        containerd=("/tmp/t/state",))
    daemon_json = tmp_path / "daemon.json"
    daemon_json.write_text('{"data-root": "/d"}')
    assert st.roots_from_command_line(["dockerd", f"--config-file={daemon_json}"]).docker == ("/d",)
    assert st.roots_from_command_line(["bash", "--root", "/x"]) == StateRoots()
    assert st.roots_from_command_line([]) == StateRoots()


def test_roots_from_a_proc_tree(tmp_path):
    for pid, comm, argv in ((10, "dockerd", DOCKERD), (11, "bash", ["bash"]), (12, "conmon", CONMON)):
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "comm").write_text(comm + "\n")
        (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (tmp_path / "13").mkdir()   # a process that exited while the tree was read
    roots = st.roots_from_processes(str(tmp_path))
    assert roots.docker == ("/tmp/t/data",) and roots.storage == ("/srv/s", "/run/s")


def test_discovered_roots_end_with_the_defaults(tmp_path):
    roots = st.discover_roots(etc=str(tmp_path), proc=str(tmp_path))
    assert roots == st.DEFAULT_ROOTS


# -- the cache -------------------------------------------------------------------


def test_lookup_each_runtime_from_its_files(tmp_path):
    roots = StateRoots(docker=(str(docker_root(tmp_path)),), storage=(str(storage_root(tmp_path)),),
                       containerd=(str(containerd_state(tmp_path)),))
    r = Runtimes(roots)
    assert r.lookup("docker", DOCKER_ID).name == "fstrace-proto-4"
    assert r.lookup("podman", PODMAN_ID).image == "localhost/fstrace-test-img:latest"
    assert r.lookup("cri", CRI_ID).pod == "shop/checkout-7d9c"


def test_lookup_by_cgroup_path_from_names(tmp_path):
    r = Runtimes(StateRoots(containerd=(str(containerd_state(tmp_path)),)))
    names = names_from_path(json.loads((DATA / "cri-bundle-config.json").read_text())["linux"]["cgroupsPath"])
    assert (names.runtime, names.container_id) == ("cri", CRI_ID)
    assert r.lookup(names.runtime, names.container_id).name == "web"


def test_podman_on_the_vfs_driver(tmp_path):
    r = Runtimes(StateRoots(storage=(str(storage_root(tmp_path, driver="vfs")),)))
    assert r.lookup("podman", PODMAN_ID).name == "fstrace-proto-2"


def test_podman_without_its_userdata_still_has_the_name(tmp_path):
    root = storage_root(tmp_path)
    shutil.rmtree(root / "overlay-containers" / PODMAN_ID)
    assert Runtimes(StateRoots(storage=(str(root),))).lookup("podman", PODMAN_ID).name == "fstrace-proto-2"


def test_docker_found_where_the_runtime_guess_was_wrong(tmp_path):
    # a docker container under containerd's cgroup name (the systemd driver) is still found
    r = Runtimes(StateRoots(docker=(str(docker_root(tmp_path)),)))
    assert r.lookup("containerd", DOCKER_ID).source == "docker"
    assert r.lookup(None, DOCKER_ID).source == "docker"


def test_docker_bundle_alone_names_nothing(tmp_path):
    r = Runtimes(StateRoots(containerd=(str(containerd_state(tmp_path, DOCKER_ID, "moby",
                                                             "docker-bundle-config.json")),)))
    assert r.lookup("docker", DOCKER_ID) is None


def test_found_names_outlive_the_state(tmp_path):
    root = docker_root(tmp_path)
    r = Runtimes(StateRoots(docker=(str(root),)))
    assert r.lookup("docker", DOCKER_ID).name == "fstrace-proto-4"
    shutil.rmtree(root)   # `docker run --rm` removed it
    assert r.lookup("docker", DOCKER_ID).name == "fstrace-proto-4"
    assert r.reads == 1


def test_half_written_state_is_retried_later(tmp_path):
    text = (DATA / "docker-config.v2.json").read_text()
    root = docker_root(tmp_path, text=text[: len(text) // 2])
    clock = Clock()
    r = Runtimes(StateRoots(docker=(str(root),)), clock=clock, retry_s=0.5)
    assert r.lookup("docker", DOCKER_ID) is None
    (root / "containers" / DOCKER_ID / "config.v2.json").write_text(text)
    assert r.lookup("docker", DOCKER_ID) is None     # not looked at again yet
    assert r.reads == 1
    clock.now += 0.5
    assert r.lookup("docker", DOCKER_ID).name == "fstrace-proto-4"
    assert r.reads == 2


def test_misses_back_off_but_keep_being_retried(tmp_path):
    clock = Clock()
    r = Runtimes(StateRoots(docker=(str(tmp_path),)), clock=clock, retry_s=0.5)
    for _ in range(20):
        r.lookup("docker", DOCKER_ID)
        clock.now += 0.5
    assert 4 < r.reads < 20
    docker_root(tmp_path / "later")
    r2 = Runtimes(StateRoots(docker=(str(tmp_path / "later" / "docker"),)), clock=clock)
    assert r2.lookup("docker", DOCKER_ID) is not None


def test_unreadable_state_is_a_miss(tmp_path):
    root = docker_root(tmp_path)
    path = root / "containers" / DOCKER_ID / "config.v2.json"
    path.unlink()
    path.mkdir()    # not a file: read fails with EISDIR
    assert Runtimes(StateRoots(docker=(str(root),))).lookup("docker", DOCKER_ID) is None


def test_containers_json_read_again_when_it_changes(tmp_path):
    root = storage_root(tmp_path)
    store = root / "overlay-containers"
    clock = Clock()
    r = Runtimes(StateRoots(storage=(str(root),)), clock=clock)
    other = "ab" * 32
    assert r.lookup("podman", other) is None
    entries = json.loads((store / "containers.json").read_text())
    entries.append(dict(entries[0], id=other, names=["web-2"]))
    (store / "containers.json").write_text(json.dumps(entries))
    os.utime(store / "containers.json", ns=(1, 1))   # a different stamp, however fast this runs
    clock.now += 10
    assert r.lookup("podman", other).name == "web-2"


def test_only_container_ids_are_looked_up(tmp_path):
    r = Runtimes(StateRoots(docker=(str(docker_root(tmp_path)),)))
    for bad in (None, "", "../../etc", DOCKER_ID + "/..", "XYZ" * 20):
        assert r.lookup("docker", bad) is None
    assert r.reads == 0


def test_the_cache_is_bounded(tmp_path):
    ids = [f"{i:064x}" for i in range(5)]
    root = tmp_path / "docker"
    for cid in ids:
        docker_root(tmp_path, cid)
    r = Runtimes(StateRoots(docker=(str(root),)), max_entries=3)
    for cid in ids:
        assert r.lookup("docker", cid) is not None
    assert len(r.known()) == 3 and r.cached(ids[0]) is None and r.cached(ids[4]) is not None


def test_roots_are_discovered_again_after_a_while_and_after_a_miss(tmp_path):
    calls = []
    clock = Clock()
    roots = [StateRoots(docker=(str(tmp_path / "none"),))]

    def discover():
        calls.append(clock.now)
        return roots[-1]

    r = Runtimes(discover=discover, clock=clock)
    r.lookup("docker", "ab" * 32)
    clock.now += 0.1
    r.lookup("docker", "cd" * 32)     # a miss, but the roots were looked for a moment ago
    assert len(calls) == 1
    # a dockerd started after fstrace, with its own data-root: found at the next miss
    roots.append(StateRoots(docker=(str(docker_root(tmp_path)),)))
    clock.now += rt.MISS_REFRESH_S
    assert r.lookup("docker", DOCKER_ID).name == "fstrace-proto-4"
    assert len(calls) == 2
    assert r.roots is roots[-1]
    clock.now += rt.ROOTS_REFRESH_S
    assert r.roots is roots[-1] and len(calls) == 3     # and every ROOTS_REFRESH_S anyway


# -- the watcher: real inotify on state written into a temporary directory ------------


def test_inotify_events_parse():
    import struct

    from bpftools.kernel import inotify

    def ev(wd, mask, name=b""):
        padded = name + b"\0" * (16 - len(name)) if name else b""
        return struct.pack("=iIII", wd, mask, 0, len(padded)) + padded

    buf = ev(1, inotify.IN_CREATE | inotify.IN_ISDIR, b"abc") + ev(2, inotify.IN_IGNORED) + ev(3, 8, b"x.json")
    assert inotify.parse_events(buf) == [
        inotify.Event(1, inotify.IN_CREATE | inotify.IN_ISDIR, "abc"), inotify.Event(2, inotify.IN_IGNORED, ""),
        inotify.Event(3, 8, "x.json")]
    assert inotify.parse_events(buf[:10]) == []


def atomic_write(path: Path, text: str) -> None:
    """As the runtimes write state: a temporary file renamed over the real one."""
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.rename(tmp, path)


def wait_cached(r: Runtimes, cid: str, timeout: float = 5.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = r.cached(cid)
        if info is not None:
            return info
        time.sleep(0.01)
    return None


def test_watcher_reads_state_as_the_runtimes_write_it(tmp_path):
    docker = tmp_path / "docker"
    (docker / "containers").mkdir(parents=True)
    storage = tmp_path / "storage"
    storage.mkdir()
    containerd = tmp_path / "containerd"
    (containerd / "io.containerd.runtime.v2.task").mkdir(parents=True)
    r = Runtimes(StateRoots((str(docker),), (str(storage),), (str(containerd),)))
    watcher = StateWatcher(r).start()
    try:
        assert watcher.error is None
        # docker: the container's directory first, its config.v2.json a moment later
        d = docker / "containers" / DOCKER_ID
        d.mkdir()
        atomic_write(d / "config.v2.json", (DATA / "docker-config.v2.json").read_text())
        # podman: a store made after the watcher started, then containers.json and the userdata config
        store = storage / "overlay-containers"
        store.mkdir()
        (store / PODMAN_ID / "userdata").mkdir(parents=True)
        shutil.copy(DATA / "podman-userdata-config.json", store / PODMAN_ID / "userdata" / "config.json")
        atomic_write(store / "containers.json", (DATA / "podman-containers.json").read_text())
        # containerd: a namespace made after the watcher started, then a task bundle in it
        bundle = containerd / "io.containerd.runtime.v2.task" / "k8s.io" / CRI_ID
        bundle.mkdir(parents=True)
        atomic_write(bundle / "config.json", (DATA / "cri-bundle-config.json").read_text())
        assert wait_cached(r, DOCKER_ID).name == "fstrace-proto-4"
        assert wait_cached(r, PODMAN_ID).name == "fstrace-proto-2"
        assert wait_cached(r, CRI_ID).pod == "shop/checkout-7d9c"
        assert r.reads == 0         # the session never had to ask
        shutil.rmtree(d)            # run --rm: gone, names kept
        assert r.lookup("docker", DOCKER_ID).name == "fstrace-proto-4"
    finally:
        watcher.close()
    assert watcher.error is None and watcher._thread is not None and not watcher._thread.is_alive()


def test_watcher_without_any_runtime_is_quiet(tmp_path):
    watcher = StateWatcher(Runtimes(StateRoots((str(tmp_path / "none"),), (), ()))).start()
    watcher.close()
    assert watcher.error is None


def test_views_and_model_name_containers_from_the_cache_only(tmp_path, monkeypatch):
    """The model and the views read what the session cached (runtimes.named(read=False)): no I/O of theirs."""
    from bpftools.model.rows import Row, cgroup_label
    from bpftools.views.tables import cgroup_name, row_record

    shared = Runtimes(StateRoots(docker=(str(docker_root(tmp_path)),)))
    monkeypatch.setattr(rt, "_shared", shared)
    path = "/docker/" + DOCKER_ID
    assert cgroup_label(path) == "docker:" + DOCKER_ID[:12] and shared.reads == 0      # not read yet
    assert rt.named(path).container_name == "fstrace-proto-4"                          # the session reads
    assert cgroup_label(path) == "fstrace-proto-4"
    assert cgroup_name(path) == "fstrace-proto-4"
    rec = row_record(Row("cgroup", path, "x", [0] * 11, extra={"own": [0] * 11, "own_failed": 0}))
    assert (rec["container_name"], rec["image"], rec["pod_name"]) == ("fstrace-proto-4", "fstrace-test-img:1", None)
    assert shared.reads == 1


def test_a_pods_own_cgroup_is_named_by_its_containers(tmp_path):
    r = Runtimes(StateRoots(containerd=(str(containerd_state(tmp_path)),)))
    pod_dir = "/kubepods/besteffort/podff625c6d-e283-4cd8-b2db-75d31edc834a"
    assert rt.named(pod_dir, r).pod_name is None                  # no container of it seen yet
    container = rt.named(pod_dir + "/" + CRI_ID, r)
    assert (container.container_name, container.pod_label) == ("web", "shop/checkout-7d9c")
    pod = rt.named(pod_dir, r, read=False)
    assert (pod.pod, pod.pod_label, pod.container_name) == ("ff625c6d-e283-4cd8-b2db-75d31edc834a",
                                                            "shop/checkout-7d9c", None)
