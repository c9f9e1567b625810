"""Container names from real runtimes: podman, docker and containerd (`ctr run` with CRI annotations).

fstrace traces the whole machine (as a user would, in another terminal) while
a named container creates a file; the event must carry the container's name,
its image and, for the CRI container, its pod and namespace -- read from the
runtimes' own state, with no daemon asked.
"""
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import FSTRACE, run_alongside
from containers import DockerDaemons, Podman, cgroup_mounts, remove_tree, unique


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    started = time.monotonic()
    p = Podman(tmp_path_factory.mktemp("podman"))
    p.setup_s = time.monotonic() - started
    try:
        yield p
    finally:
        p.close()


@pytest.fixture(scope="module")
def daemons():
    """containerd and dockerd of our own, under /tmp (short socket paths), stopped and removed afterwards."""
    tmp = Path("/tmp") / unique()
    tmp.mkdir()
    try:
        d = DockerDaemons(tmp)
        try:
            yield d
        finally:
            d.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def records(out: bytes):
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def trace_while(args, workload):
    """System-wide `fstrace trace --json ARGS` while workload() runs: the records."""
    first, out, err = run_alongside(["trace", "--json", *args], workload)
    assert first, err.decode()
    recs = records(first + out)
    assert recs[0]["type"] == "start" and recs[-1]["type"] == "summary", err.decode()
    return recs


def created(recs, marker):
    return [r for r in recs if r["type"] == "event" and r["event"] == "create"
            and (r["path"] or "").endswith("/" + marker)]


def test_podman_run_rm_names_container_and_image(podman):
    name, marker = unique(), unique("mark")
    recs = trace_while(["-e", "create"], lambda: podman.run(name, "touch", "/tmp/" + marker))
    evs = created(recs, marker)
    assert evs, "no create of /tmp/%s among %d records" % (marker, len(recs))
    for ev in evs:
        assert ev["container_name"] == name
        assert ev["image"] == podman.image
        assert ev["container"].startswith("podman:")
        assert ev["cgroup"].startswith("/libpod_parent/libpod-")
        assert ev["pod_name"] is None and ev["pod_namespace"] is None


def test_podman_container_filter(podman):
    name, other, marker = unique(), unique(), unique("mark")

    def workload():
        podman.run(other, "touch", "/tmp/" + marker)
        podman.run(name, "touch", "/tmp/" + marker)

    recs = trace_while(["-e", "create", "--container", name], workload)
    evs = [r for r in recs if r["type"] == "event"]
    assert created(recs, marker), "no create of /tmp/%s among %d records" % (marker, len(recs))
    assert {r["container_name"] for r in evs} == {name}
    cgroups = [r for r in recs if r["type"] == "cgroup"]
    assert cgroups and all(r["path"] == evs[0]["cgroup"] for r in cgroups)


def test_text_trace_shows_the_container_name(podman):
    """The text view's cgroup column says web-1 where it said podman:<short id>."""
    name, marker = unique(), unique("mark")
    tracer = subprocess.Popen([FSTRACE, "trace", "-e", "create", "--container", name],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert tracer.stderr.readline().startswith(b"fstrace: backend")    # the header: every probe attached
        podman.run(name, "touch", "/tmp/" + marker)
        tracer.send_signal(signal.SIGINT)
        out, err = tracer.communicate(timeout=60)
    finally:
        if tracer.poll() is None:
            tracer.kill()
            tracer.wait()
    lines = [line for line in out.decode().splitlines() if line.endswith("/tmp/" + marker)]
    assert len(lines) == 1, (out.decode()[-2000:], err.decode()[-2000:])
    assert lines[0].split()[1] == name and "create" in lines[0]


def test_docker_run_names_container_and_image(daemons):
    name, marker = unique(), unique("mark")
    recs = trace_while(["-e", "create"], lambda: daemons.run(name, "touch", "/tmp/" + marker))
    evs = created(recs, marker)
    assert evs, "no create of /tmp/%s among %d records" % (marker, len(recs))
    for ev in evs:
        assert ev["container_name"] == name
        assert ev["image"] == daemons.image
        assert ev["container"].startswith("docker:")
        assert ev["cgroup"].startswith("/docker/")


def test_containerd_cri_annotations_name_the_pod(daemons):
    """`ctr run` with the annotations containerd's CRI plugin sets, in a kubelet-style cgroupfs path."""
    top = unique()
    cid = uuid.uuid4().hex + uuid.uuid4().hex
    pod_uid = str(uuid.uuid4())
    marker = unique("mark")
    notes = {"container-type": "container", "container-name": "web", "sandbox-name": "checkout-7d9c",
             "sandbox-namespace": "shop", "image-name": "registry.example/shop/web:1.2"}
    argv = ["run", "--rm", "--rootfs", "--cgroup", "/%s/kubepods/besteffort/pod%s/%s" % (top, pod_uid, cid)]
    for key, value in notes.items():
        argv += ["--annotation", "io.kubernetes.cri.%s=%s" % (key, value)]
    argv += [str(daemons.rootfs), cid, "/bin/touch", "/tmp/" + marker]
    try:
        recs = trace_while(["-e", "create"], lambda: daemons.ctr(unique(), *argv))
    finally:
        for mount in cgroup_mounts():
            remove_tree(os.path.join(mount, top))
    evs = created(recs, marker)
    assert evs, "no create of /tmp/%s among %d records" % (marker, len(recs))
    for ev in evs:
        assert (ev["container_name"], ev["image"]) == ("web", "registry.example/shop/web:1.2")
        assert (ev["pod_namespace"], ev["pod_name"]) == ("shop", "checkout-7d9c")
        assert ev["container"] == "cri:" + cid[:12]
        assert ev["pod"] == pod_uid


def test_cgroups_command_lists_container_names(daemons):
    name = unique()
    daemons.names.append(name)
    daemons.docker("run", "-d", "--network", "none", "--name", name, daemons.image, "sleep", "30")
    try:
        out = subprocess.run([FSTRACE, "cgroups", "--json"], capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr.decode()
        rows = json.loads(out.stdout)["cgroups"]
        mine = [r for r in rows if r["container_name"] == name]
        assert len(mine) == 1 and mine[0]["image"] == daemons.image, [r for r in rows if r["container"]]
        assert mine[0]["path"].startswith("/docker/") and mine[0]["alive"]
        text = subprocess.run([FSTRACE, "cgroups"], capture_output=True, text=True, timeout=60).stdout
        assert "%s (%s)" % (name, daemons.image) in text
    finally:
        daemons.docker("rm", "-f", name)
