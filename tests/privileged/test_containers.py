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
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from conftest import FSTRACE
from containers import DockerDaemons, Podman, cgroup_mounts, remove_tree, unique
from prometheus_client.parser import text_string_to_metric_families


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


class LiveTrace:
    """One system-wide `fstrace trace --json ARGS` for a whole module: records are collected as they come."""

    def __init__(self, args):
        self.proc = subprocess.Popen([FSTRACE, "trace", "--json", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.records: list[dict] = []
        first = self.proc.stdout.readline()
        assert first, self.proc.stderr.read().decode()
        self.records.append(json.loads(first))
        assert self.records[0]["type"] == "start"
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.records.append(json.loads(line))

    def wait_created(self, marker: str, timeout: float = 30.0) -> list[dict]:
        """The create events of a file named marker, once one has arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            evs = created(list(self.records), marker)
            if evs:
                return evs
            time.sleep(0.05)
        raise AssertionError("no create of /tmp/%s among %d records" % (marker, len(self.records)))

    def close(self) -> dict:
        """Stop fstrace with SIGINT: its summary record."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=10)
        return self.records[-1]


@pytest.fixture(scope="module")
def tracer(podman, daemons):
    """fstrace tracing every create on the machine while the runtimes run their containers.

    The runtimes are up first, as on a host where fstrace starts among running daemons (one started
    later is found too, but its first container may be read late: see test_runtimes.py).
    """
    t = LiveTrace(["-e", "create"])
    try:
        yield t
    finally:
        summary = t.close()
    assert summary["type"] == "summary", t.proc.stderr.read().decode()[-2000:]


def created(recs, marker):
    return [r for r in recs if r["type"] == "event" and r["event"] == "create"
            and (r["path"] or "").endswith("/" + marker)]


def test_podman_run_rm_names_container_and_image(podman, tracer):
    """The held-out check: `podman run --rm --name NAME` of an offline image creates a file."""
    name, marker = unique(), unique("mark")
    podman.run(name, "touch", "/tmp/" + marker)
    for ev in tracer.wait_created(marker):
        assert ev["container_name"] == name
        assert ev["image"] == podman.image
        assert ev["container"].startswith("podman:")
        assert ev["cgroup"].startswith("/libpod_parent/libpod-")
        assert ev["pod_name"] is None and ev["pod_namespace"] is None


def test_docker_run_names_container_and_image(daemons, tracer):
    name, marker = unique(), unique("mark")
    daemons.run(name, "touch", "/tmp/" + marker)
    for ev in tracer.wait_created(marker):
        assert ev["container_name"] == name
        assert ev["image"] == daemons.image
        assert ev["container"].startswith("docker:")
        assert ev["cgroup"].startswith("/docker/")


def test_containerd_cri_annotations_name_the_pod(daemons, tracer):
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
        daemons.ctr(unique(), *argv)
        evs = tracer.wait_created(marker)
    finally:
        for mount in cgroup_mounts():
            remove_tree(os.path.join(mount, top))
    for ev in evs:
        assert (ev["container_name"], ev["image"]) == ("web", "registry.example/shop/web:1.2")
        assert (ev["pod_namespace"], ev["pod_name"]) == ("shop", "checkout-7d9c")
        assert ev["container"] == "cri:" + cid[:12]
        assert ev["pod"] == pod_uid


def started_alongside(argv, header: bytes):
    """Start fstrace and wait for its header line on stderr (every probe attached)."""
    proc = subprocess.Popen([FSTRACE, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = proc.stderr.readline()
    assert line.startswith(header), line + proc.stderr.read()
    return proc


def stopped(proc) -> tuple[bytes, bytes]:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_container_filter_and_text_view(podman):
    """--container NAME keeps one container's events, and the text view names it (not podman:<short id>)."""
    name, other, marker = unique(), unique(), unique("mark")
    proc = started_alongside(["trace", "-e", "create", "--container", name], b"fstrace: backend")
    try:
        podman.run(other, "touch", "/tmp/" + marker)
        podman.run(name, "touch", "/tmp/" + marker)
    finally:
        out, err = stopped(proc)
    lines = out.decode().splitlines()
    # a create by open(O_CREAT) ends with its time in parentheses: "/tmp/mark-...  (12.3 us)"
    mine = [line for line in lines if line.split("  (")[0].endswith("/tmp/" + marker)]
    assert len(mine) == 1, (out.decode()[-2000:], err.decode()[-2000:])
    assert mine[0].split()[1] == name and "create" in mine[0]
    assert not any(other in line for line in lines)
    changes = [line for line in lines if " cgroup " in line]        # only the container's cgroup's
    assert changes and all("/libpod_parent/libpod-" in line for line in changes), changes


def test_report_rows_name_the_container(daemons):
    """The counting path: report --json rows carry the names; --container narrows the report to them."""
    name, marker = unique(), unique("mark")
    proc = started_alongside(["report", "--json", "-d", "5m", "--container", name], b"fstrace: counting")
    try:
        daemons.run(name, "sh", "-c", "touch /tmp/%s; mkdir /tmp/%s.d" % (marker, marker))
    finally:
        out, err = stopped(proc)
    rep = json.loads(out)
    rows = [r for r in rep["cgroups"] if r["container_name"] == name]
    assert len(rows) == 1, (rep["cgroups"], err.decode()[-2000:])
    assert rows[0]["image"] == daemons.image and rows[0]["container"].startswith("docker:")
    assert rows[0]["events"]["create"] >= 2
    assert {r["path"] for r in rep["cgroups"]} <= {"/", "/docker", rows[0]["path"]}
    assert "--container %s" % name in rep["scope"]["filters"]


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


def test_export_labels_series_with_the_container_name(podman):
    """fstrace export: the container's series carry container_name and image (one series per cgroup)."""
    name, marker = unique(), unique("mark")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = started_alongside(["export", "--listen", "127.0.0.1:%d" % port, "-i", "0.2", "--container", name],
                             b"fstrace: serving")
    try:
        podman.run(name, "sh", "-c", "touch /tmp/%s; touch /tmp/%s.2" % (marker, marker))
        deadline = time.monotonic() + 30
        samples = []
        while time.monotonic() < deadline and not samples:
            time.sleep(0.3)
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
                families = text_string_to_metric_families(r.read().decode())
            samples = [s for f in families if f.name == "fstrace_events" for s in f.samples
                       if s.name == "fstrace_events_total" and s.labels["event"] == "create"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert samples, "no create series for %s" % name
    assert {s.labels["container_name"] for s in samples} == {name}
    assert {s.labels["image"] for s in samples} == {podman.image}
    assert all(s.labels["container"].startswith("podman:") for s in samples)
    assert sum(s.value for s in samples) >= 2
