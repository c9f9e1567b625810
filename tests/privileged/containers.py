"""Real container runtimes for the tests, offline: podman, docker and containerd from Debian's packages.

Images are built from busybox-static (nothing is pulled).  Everything a
runtime makes is named fstrace-test-*, and removed afterwards: containers,
images, the daemons (dockerd and containerd run with their own data, exec and
state roots, sockets and pidfile under a temporary directory, so they never
meet another docker on the host), their mounts, and the cgroups the runtimes
made (docker/ and libpod_parent/ in every hierarchy, when they were not there
before).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "touch", "sleep", "mkdir", "cat", "echo", "ls", "rm", "true")
DOCKER = "/usr/bin/docker"       # /usr/local/bin/docker is another client
PODMAN = "/usr/bin/podman"
CTR = "/usr/bin/ctr"
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""
# cgroups the runtimes make at the top of each hierarchy (cgroupfs drivers)
RUNTIME_CGROUPS = ("docker", "libpod_parent")
SHARED_PATHS = ("/etc/docker/key.json", "/run/containerd")   # dockerd and containerd shims write these


def unique(prefix: str = "fstrace-test") -> str:
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def make_rootfs(path: Path) -> Path:
    """A root filesystem with a static busybox and the applets the tests use."""
    (path / "bin").mkdir(parents=True)
    for d in ("tmp", "etc", "proc", "sys", "dev"):
        (path / d).mkdir()
    shutil.copy2(BUSYBOX, path / "bin" / "busybox")
    for applet in APPLETS:
        os.symlink("busybox", path / "bin" / applet)
    return path


def make_rootfs_tar(dir_: Path) -> Path:
    rootfs = make_rootfs(dir_ / "rootfs")
    tar = dir_ / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    return tar


def cgroup_mounts() -> list[str]:
    """Every cgroup and cgroup2 mount point (a hybrid host has both)."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype in ("cgroup", "cgroup2"):
                points.append(fields[4])
    return points


def remove_tree(path: str, timeout: float = 10.0) -> None:
    """rmdir a cgroup directory and its children, deepest first, waiting for exiting tasks."""
    deadline = time.monotonic() + timeout
    while os.path.isdir(path):
        try:
            for dirpath, _dirs, _files in sorted(os.walk(path), key=lambda w: -w[0].count("/")):
                os.rmdir(dirpath)
        except FileNotFoundError:
            pass
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class CgroupsMade:
    """Remembers which runtime cgroups (and shared paths) existed before; removes the others at the end."""

    def __init__(self, names=RUNTIME_CGROUPS, paths=SHARED_PATHS):
        self.names = names
        self.before = {os.path.join(m, n) for m in cgroup_mounts() for n in names
                       if os.path.isdir(os.path.join(m, n))}
        self.paths_before = {p for p in paths if os.path.lexists(p)}
        self.paths = paths

    def cleanup(self, extra: tuple[str, ...] = ()) -> None:
        for mount in cgroup_mounts():
            for name in self.names + extra:
                path = os.path.join(mount, name)
                if path not in self.before:
                    remove_tree(path)
        for p in self.paths:
            if p not in self.paths_before:
                if os.path.isdir(p):
                    shutil.rmtree(p, ignore_errors=True)
                elif os.path.lexists(p):
                    os.unlink(p)


def unmount_under(root: Path) -> None:
    """Lazily unmount everything mounted below root (deepest first): daemons' overlay and shm mounts."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            if point == str(root) or point.startswith(str(root) + "/"):
                points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def wait_for(predicate, timeout: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError("%s did not come up in %.0f s\n%s" % (what, timeout, tail))


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Podman:
    """podman with runc and cgroupfs (crun refuses this hybrid host), its default storage, one imported image."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.conf = tmp / "containers.conf"
        self.conf.write_text(CONTAINERS_CONF)
        self.env = dict(os.environ, CONTAINERS_CONF=str(self.conf))
        self.image = "localhost/%s:1" % unique()
        self.cgroups = CgroupsMade()
        self.names: list[str] = []
        self.run_cmd([PODMAN, "import", "--change", "ENV PATH=/bin", str(make_rootfs_tar(tmp)), self.image])

    def run_cmd(self, argv, **kw) -> subprocess.CompletedProcess:
        proc = subprocess.run(argv, env=self.env, capture_output=True, timeout=120, **kw)
        if proc.returncode != 0:
            raise RuntimeError("%s: %s" % (" ".join(argv), proc.stderr.decode(errors="replace")))
        return proc

    def run(self, name: str, *cmd: str, rm: bool = True) -> subprocess.CompletedProcess:
        self.names.append(name)
        return self.run_cmd([PODMAN, "run", *(["--rm"] if rm else []), "--name", name, self.image, *cmd])

    def close(self) -> None:
        for name in self.names:
            subprocess.run([PODMAN, "rm", "-f", "-t", "0", name], env=self.env, capture_output=True)
        subprocess.run([PODMAN, "rmi", "-f", self.image], env=self.env, capture_output=True)
        self.cgroups.cleanup()


class DockerDaemons:
    """containerd and dockerd started here, everything under one temporary directory."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.cgroups = CgroupsMade()
        self.sock = tmp / "docker.sock"
        self.ctd_sock = tmp / "containerd.sock"
        self.state = tmp / "containerd-state"
        conf = tmp / "containerd.toml"
        conf.write_text(
            'version = 2\nroot = "%s"\nstate = "%s"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            '[grpc]\n  address = "%s"\n[ttrpc]\n  address = "%s.ttrpc"\n'
            % (tmp / "containerd-root", self.state, self.ctd_sock, self.ctd_sock))
        (tmp / "daemon.json").write_text("{}\n")
        self.containerd = self.dockerd = None
        self.names: list[str] = []
        self.namespaces: list[str] = []
        self.started = time.monotonic()
        try:
            self.containerd = subprocess.Popen(
                ["containerd", "--config", str(conf)], stdout=open(tmp / "containerd.log", "wb"),
                stderr=subprocess.STDOUT, start_new_session=True)
            wait_for(self.ctd_sock.exists, 30, "containerd", tmp / "containerd.log")
            self.dockerd = subprocess.Popen(
                ["dockerd", "--config-file", str(tmp / "daemon.json"), "--containerd", str(self.ctd_sock),
                 "--data-root", str(tmp / "data"), "--exec-root", str(tmp / "exec"),
                 "--pidfile", str(tmp / "dockerd.pid"), "-H", "unix://%s" % self.sock,
                 "--iptables=false", "--ip-masq=false", "--bridge=none"],
                stdout=open(tmp / "dockerd.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
            wait_for(lambda: self.sock.exists() and subprocess.run(
                [DOCKER, "-H", "unix://%s" % self.sock, "version"], capture_output=True).returncode == 0,
                60, "dockerd", tmp / "dockerd.log")
            self.startup_s = time.monotonic() - self.started
            self.rootfs = make_rootfs(tmp / "ctr-rootfs")
            self.image = "%s:1" % unique()
            self.docker("import", "--change", "ENV PATH=/bin", str(make_rootfs_tar(tmp / "img")), self.image)
        except BaseException:
            self.close()
            raise

    def docker(self, *args: str) -> subprocess.CompletedProcess:
        argv = [DOCKER, "-H", "unix://%s" % self.sock, *args]
        proc = subprocess.run(argv, capture_output=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError("%s: %s" % (" ".join(argv), proc.stderr.decode(errors="replace")))
        return proc

    def run(self, name: str, *cmd: str) -> subprocess.CompletedProcess:
        self.names.append(name)
        return self.docker("run", "--rm", "--network", "none", "--name", name, self.image, *cmd)

    def ctr(self, namespace: str, *args: str) -> subprocess.CompletedProcess:
        if namespace not in self.namespaces:
            self.namespaces.append(namespace)
        argv = [CTR, "-a", str(self.ctd_sock), "-n", namespace, *args]
        proc = subprocess.run(argv, capture_output=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError("%s: %s" % (" ".join(argv), proc.stderr.decode(errors="replace")))
        return proc

    def close(self) -> None:
        if self.dockerd is not None and self.dockerd.poll() is None:
            for name in self.names:
                subprocess.run([DOCKER, "-H", "unix://%s" % self.sock, "rm", "-f", name], capture_output=True)
        if self.containerd is not None and self.containerd.poll() is None:
            for ns in self.namespaces:
                listed = subprocess.run([CTR, "-a", str(self.ctd_sock), "-n", ns, "c", "ls", "-q"],
                                        capture_output=True, text=True)
                for cid in listed.stdout.split():
                    subprocess.run([CTR, "-a", str(self.ctd_sock), "-n", ns, "task", "kill", "-s", "KILL", cid],
                                   capture_output=True)
                    subprocess.run([CTR, "-a", str(self.ctd_sock), "-n", ns, "task", "rm", "-f", cid],
                                   capture_output=True)
                    subprocess.run([CTR, "-a", str(self.ctd_sock), "-n", ns, "c", "rm", cid], capture_output=True)
                subprocess.run([CTR, "-a", str(self.ctd_sock), "namespaces", "rm", ns], capture_output=True)
        for proc in (self.dockerd, self.containerd):
            if proc is not None:
                stop(proc)
        unmount_under(self.tmp)
        self.cgroups.cleanup()
