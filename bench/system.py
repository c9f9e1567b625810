"""The machine: what it is, and the few things the harness sets up on it.

Packages and tracefs are only ever added, never removed.  Cgroups are made
under a unique ``fstrace-bench-*`` name in the cgroup2 root and removed again;
only processes the harness started are ever put into them.
"""
from __future__ import annotations

import ctypes
import os
import platform
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

MOUNTINFO = "/proc/self/mountinfo"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def mounts(mountinfo: str = MOUNTINFO) -> list[tuple[str, str]]:
    """(mount point, filesystem type) of every mount, in mountinfo order."""
    found = []
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            found.append((point, fields[sep + 1]))
    return found


def cgroup2_root() -> Path:
    for point, fstype in mounts():
        if fstype == "cgroup2":
            return Path(point)
    raise SystemExit("no cgroup2 mount in %s: the cgroup workloads need cgroup2" % MOUNTINFO)


def own_cgroup() -> str:
    """This process's cgroup2 path, e.g. "/" (the "0::" line of /proc/self/cgroup)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise SystemExit("this process is in no cgroup2 cgroup")


class BenchCgroup:
    """A fresh cgroup2 directory fstrace-bench-<random> in the cgroup2 root."""

    def __init__(self, root: Path):
        self.root = root
        self.dir = root / ("fstrace-bench-" + secrets.token_hex(4))
        self.dir.mkdir()
        self.path = "/" + self.dir.name
        self.id = self.dir.stat().st_ino

    def remove(self, timeout: float = 10.0) -> None:
        """rmdir the directory and any left-over children, deepest first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                for sub in sorted(self.dir.glob("**/"), key=lambda p: -len(p.parts)):
                    sub.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:       # EBUSY: a task of ours is still exiting
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def ensure_tracefs() -> list[str]:
    """Mount tracefs and debugfs where bpftrace and BCC look for them, if missing."""
    present = {point for point, _ in mounts()}
    done = []
    for fstype, point in (("tracefs", "/sys/kernel/tracing"), ("debugfs", "/sys/kernel/debug")):
        if point not in present:
            subprocess.run(["mount", "-t", fstype, fstype, point], check=True)
            done.append("mounted %s at %s" % (fstype, point))
    return done


def scratch_tmpfs(prefix: str) -> Path:
    """A fresh directory with a tmpfs of its own on it, for the workloads' files (remove_scratch()).

    Not the root filesystem: ext4 without a journal (this machine's root) skips, when it
    allocates an inode, each inode of the group deleted between 1 and 5 s before (305 s while
    the inode table block is dirty; fs/ext4/ialloc.c, recently_deleted()).  A file workload
    run a few seconds after the previous run's unlinks, as each traced run is after its
    tracer's ready wait, spent 10-30x the time in find_inode_bit() that a run started at once
    spent (perf record -a, 2026-11-30), whichever tracer was running.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "fstrace-bench", str(path)], check=True)
    return path


def remove_scratch(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False)
    shutil.rmtree(path, ignore_errors=True)


def ensure_packages(packages: dict[str, str]) -> list[str]:
    """apt-get install the Debian package of every missing command ({command: package})."""
    missing = sorted({pkg for cmd, pkg in packages.items() if not shutil.which(cmd)})
    if not missing:
        return []
    if not shutil.which("apt-get"):
        return ["not installed (no apt-get): " + " ".join(missing)]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = subprocess.run(["apt-get", "install", "-y", *missing], env=env, capture_output=True, text=True)
    if proc.returncode:
        return ["apt-get install %s failed: %s" % (" ".join(missing), last_line(proc.stderr))]
    return ["installed " + " ".join(missing)]


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def package_version(package: str) -> str | None:
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    os_name = next((line.split("=", 1)[1].strip('"') for line in Path("/etc/os-release").read_text().splitlines()
                    if line.startswith("PRETTY_NAME=")), "unknown")
    return {
        "os": os_name,
        "kernel": platform.release(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "hostname": platform.node(),
    }


def load_average() -> float:
    """The 1-minute load average: how busy the machine is with everything, us included."""
    return os.getloadavg()[0]


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process, from /proc/<pid>/stat (clock-tick resolution)."""
    try:
        stat = Path("/proc/%d/stat" % pid).read_text()
    except FileNotFoundError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
NR_PIDFD_GETFD, NR_BPF, BPF_OBJ_GET_INFO_BY_FD = 438, 321, 15


def prog_name(fd: int) -> str:
    """The name of the BPF program at our fd (struct bpf_prog_info.name, offset 64)."""
    info = ctypes.create_string_buffer(256)
    attr = ctypes.create_string_buffer(16)
    ctypes.c_uint32.from_buffer(attr, 0).value = fd
    ctypes.c_uint32.from_buffer(attr, 4).value = len(info)
    ctypes.c_uint64.from_buffer(attr, 8).value = ctypes.addressof(info)
    if _libc.syscall(NR_BPF, BPF_OBJ_GET_INFO_BY_FD, attr, len(attr)) < 0:
        return "?"
    return info.raw[64:80].split(b"\0")[0].decode(errors="replace")


def prog_stats(pid: int) -> dict[str, tuple[int, int]]:
    """name -> (run_time_ns, run_cnt) of every BPF program pid holds; a name that repeats (BPF keeps
    15 bytes of it) gets #2, #3 in the order the programs were loaded."""
    found = []
    pidfd = os.pidfd_open(pid)
    try:
        for fd in os.listdir("/proc/%d/fdinfo" % pid):
            try:
                text = Path("/proc/%d/fdinfo/%s" % (pid, fd)).read_text()
            except OSError:
                continue
            if "prog_type:" not in text:
                continue
            fields = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
            mine = _libc.syscall(NR_PIDFD_GETFD, pidfd, int(fd), 0)
            name = prog_name(mine) if mine >= 0 else "fd%s" % fd
            if mine >= 0:
                os.close(mine)
            found.append((int(fields.get("prog_id", 0)), name, int(fields.get("run_time_ns", 0)),
                          int(fields.get("run_cnt", 0))))
    finally:
        os.close(pidfd)
    stats = {}
    for _, name, ns, cnt in sorted(set(found)):
        key, n = name, 1
        while key in stats:
            n += 1
            key = "%s#%d" % (name, n)
        stats[key] = (ns, cnt)
    return stats
