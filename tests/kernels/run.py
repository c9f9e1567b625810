#!/usr/bin/env python3
"""The kernel matrix: the privileged backend tests inside Debian's own kernels.

This machine's kernel has no kprobes and refuses fentry, so the fsnotify
backends are tested in Debian's kernels, booted under qemu (TCG: KVM is not
usable here) with the host's root filesystem through virtme-ng:

  6.1   bookworm            kprobe    (fentry cannot attach: 7 arguments)
  6.12  bookworm-backports  fentry, kprobe

Each boot runs one pytest session: every backend under test is one fstrace
process (one BPF compile) watching every scenario (tests/privileged/tracer.py).
The 6.12 boot then starts systemd (tests/kernels/systemd_guest.py) and runs
tests/privileged/systemd_checks.py under it: `-- CMD` in a transient scope,
units named from real .service cgroups (--no-systemd leaves this out).

Setup, idempotent, from Debian's and PyPI's registries only: bookworm-
backports is added with the mirror the machine's own apt sources use;
qemu-system-x86, the kernels and their headers come from apt; virtme-ng
goes into its own venv under build/kernels.

With --bench, each boot runs tests/kernels/bench.py instead (backend costs,
latency against bcc's ext4dist and fileslower; relative figures) and
appends its tables to build/kernels/bench.md.

usage: tests/kernels/run.py [--kernel 6.1|6.12]... [--no-systemd] [--setup-only|--bench] [-- PYTEST ARGS]
env:   FSTRACE_KERNELS_DIR (build/kernels), GUEST_MEM (3G), GUEST_CPUS (2),
       GUEST_TIMEOUT (2400 s per boot; a boot takes ~11-20 min here),
       GUEST_HEADERS=RELEASE: inside the guest, the headers of kernel RELEASE
       (e.g. 6.1.0-57-amd64) bind-mounted over the booted kernel's, to test
       that no backend depends on matching headers (the host is untouched)
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("FSTRACE_KERNELS_DIR", REPO / "build" / "kernels"))
CONSOLE = "console.log"     # in a boot's output directory: all the guest printed
REASON_LINES = 8            # of a failed test's assertion, at the end of the log
VIRTME_NG = "virtme-ng==1.42"
APT = Path("/etc/apt")
BACKPORTS_LIST = "sources.list.d/fstrace-kernels-backports.sources"
HOST_PACKAGES = ["qemu-system-x86", "busybox-static"]
GUEST_TESTS = ["tests/privileged/test_backends.py", "tests/privileged/fsnotify_checks.py",
               "tests/privileged/test_arming_marks.py", "tests/privileged/test_kernel_truth.py",
               "tests/privileged/test_bpf_sources.py"]


@dataclass(frozen=True)
class Kernel:
    name: str
    package: re.Pattern      # linux-image-<release> packages of this series
    suite: str               # "" or "-backports": where they come from
    backends: str            # FSTRACE_TEST_BACKENDS: auto must pick the first
    systemd: bool = False    # then systemd_guest.py: systemd_checks.py under a systemd started in the guest

    @property
    def bench_backends(self) -> list[str]:
        return self.backends.split(",") + ["tracepoint"]


KERNELS = [
    Kernel("6.1", re.compile(r"^linux-image-(6\.1\.0-[0-9]+-amd64)$"), "", "kprobe"),
    Kernel("6.12", re.compile(r"^linux-image-(6\.12\.[0-9]+\+deb12-amd64)$"), "-backports", "fentry,kprobe",
           systemd=True),
]


def say(text: str) -> None:
    print("[kernels] " + text, flush=True)


def sh(*argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, **kw)


# --- apt -------------------------------------------------------------------------------------
def os_release() -> dict[str, str]:
    fields = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        key, _, value = line.partition("=")
        fields[key] = value.strip('"')
    return fields


def apt_sources(apt: Path = APT) -> list[dict[str, list[str]]]:
    """Every deb source as {"uris": [...], "suites": [...], "signed_by": [...]}, both file formats."""
    sources = []
    one_line = [apt / "sources.list"] + sorted((apt / "sources.list.d").glob("*.list"))
    for path in one_line:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            m = re.match(r"\s*deb\s+(\[(?P<opts>[^]]*)\]\s+)?(?P<uri>\S+)\s+(?P<suite>\S+)", line)
            if m:
                opts = dict(o.split("=", 1) for o in (m["opts"] or "").split() if "=" in o)
                sources.append({"uris": [m["uri"]], "suites": [m["suite"]],
                                "signed_by": [opts["signed-by"]] if "signed-by" in opts else []})
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.split()
            if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
                sources.append({"uris": fields.get("uris", []), "suites": fields.get("suites", []),
                                "signed_by": fields.get("signed-by", [])})
    return sources


def ensure_backports(codename: str, apt: Path = APT) -> bool:
    """Add <codename>-backports from the mirror serving <codename>; True if apt needs an update."""
    sources = apt_sources(apt)
    if any(codename + "-backports" in s["suites"] for s in sources):
        return False
    main = next((s for s in sources if codename in s["suites"] and s["uris"]), None)
    if main is None:
        raise SystemExit("no apt source serves %s: cannot derive a mirror for %s-backports" % (codename, codename))
    stanza = ["Types: deb", "URIs: " + main["uris"][0], "Suites: %s-backports" % codename, "Components: main"]
    if main["signed_by"]:
        stanza.append("Signed-By: " + main["signed_by"][0])
    (apt / BACKPORTS_LIST).write_text("\n".join(stanza) + "\n")
    say("added %s-backports from %s (%s)" % (codename, main["uris"][0], apt / BACKPORTS_LIST))
    return True


def newest(pattern: re.Pattern) -> str:
    out = sh("apt-cache", "search", "--names-only", pattern.pattern, capture_output=True, text=True).stdout
    releases = [m[1] for m in (pattern.match(line.split(" - ")[0]) for line in out.splitlines()) if m]
    if not releases:
        raise SystemExit("apt has no package matching %s" % pattern.pattern)
    return max(releases, key=lambda r: [int(x) for x in re.findall(r"\d+", r)])


def installed(package: str) -> bool:
    q = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return q.stdout.endswith("ok installed")


def setup(kernels: list[Kernel]) -> dict[str, str]:
    """Install what the matrix needs; the release of each kernel."""
    codename = os_release().get("VERSION_CODENAME", "")
    if codename != "bookworm":
        raise SystemExit("the kernel matrix uses Debian bookworm's kernels; this is %r" % codename)
    stale = ensure_backports(codename) if any(k.suite for k in kernels) else False
    releases = {}
    for k in kernels:
        try:
            releases[k.name] = newest(k.package)
        except SystemExit:
            if stale:
                break
            raise
    if stale or len(releases) < len(kernels):
        say("apt-get update")
        sh("apt-get", "update", "-qq", "-o", "DPkg::Lock::Timeout=600")
        releases = {k.name: newest(k.package) for k in kernels}
    wanted = HOST_PACKAGES + [p % r for r in releases.values() for p in ("linux-image-%s", "linux-headers-%s")]
    missing = [p for p in wanted if not installed(p)]
    if missing:
        say("apt-get install " + " ".join(missing))
        # the guest boots without the distribution's initramfs: do not build one
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", INITRD="No")
        sh("apt-get", "install", "-y", "-qq", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=600",
           *missing, env=env)
    venv = STATE / "venv"
    if not (venv / "bin" / "vng").exists():
        say("installing %s into %s" % (VIRTME_NG, venv))
        sh(sys.executable if sys.prefix == sys.base_prefix else "/usr/bin/python3", "-m", "venv", str(venv))
        sh(str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", VIRTME_NG)
    return releases


# --- boots -----------------------------------------------------------------------------------
def pytest_argv(junit: Path, tests: list[str], pytest_args: list[str]) -> list[str]:
    return ["-m", "pytest", "-v", "-p", "no:cacheprovider", "-o", "console_output_style=classic",
            "-o", "junit_family=xunit1", "--junitxml=%s" % junit, *tests, *pytest_args]


def guest_command(kernel: Kernel, out: Path, pytest_args: list[str], bench: bool, systemd: bool = True) -> str:
    python = ".venv/bin/python"         # in REPO
    if bench:
        args = [str(REPO / "tests" / "kernels" / "bench.py"), str(out / "bench.md"), *kernel.bench_backends]
    else:
        args = pytest_argv(out / "junit.xml", GUEST_TESTS, pytest_args)
    env = {"FSTRACE_REQUIRE_BPF": "1", "FSTRACE_TEST_BACKENDS": kernel.backends,
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    headers = os.environ.get("GUEST_HEADERS")
    mounts = ""
    if headers:
        for link in ("build", "source"):
            mounts += "mount --bind %s /lib/modules/$(uname -r)/%s && " % (
                shlex.quote(os.path.realpath("/lib/modules/%s/%s" % (headers, link))), link)
    exports = "export %s && " % " ".join("%s=%s" % kv for kv in env.items())
    run = "%s %s; s=$?; " % (python, " ".join(shlex.quote(a) for a in args))
    if kernel.systemd and systemd and not bench:
        # the kernel's command line carries this (2048 bytes in all): systemd_guest.py knows its own tests
        run += "%s tests/kernels/systemd_guest.py %s %s; t=$?; [ $s -eq 0 ] && s=$t; " % (
            python, shlex.quote(str(out)), " ".join(shlex.quote(a) for a in pytest_args))
    return "%scd %s && %s%secho $s > %s" % (mounts, shlex.quote(str(REPO)), exports, run,
                                           shlex.quote(str(out / "status")))


def boot(kernel: Kernel, release: str, pytest_args: list[str], bench: bool = False, systemd: bool = True) -> Path:
    """Boot release and run the guest tests; the directory holding their results."""
    out = STATE / "out" / release
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        old.unlink()
    image = Path("/boot/vmlinuz-" + release)
    vng = [str(STATE / "venv" / "bin" / "vng"), "--run", str(image), "--disable-kvm",
           "--memory", os.environ.get("GUEST_MEM", "3G"), "--cpus", os.environ.get("GUEST_CPUS", "2"),
           "--rwdir", str(out), "--exec", guest_command(kernel, out, pytest_args, bench, systemd)]
    env = dict(os.environ, PATH="%s:%s" % (STATE / "venv" / "bin", os.environ["PATH"]))
    # qemu reopens its stdout with O_TRUNC: give it a pipe, never a file
    proc = subprocess.Popen(vng, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    timeout = float(os.environ.get("GUEST_TIMEOUT", "2400"))
    timer = threading.Timer(timeout, lambda: (say("%s: no end after %.0f s, killed" % (release, timeout)),
                                              proc.kill()))
    timer.start()
    with open(out / CONSOLE, "w") as console:
        for line in proc.stdout:
            text = line.decode("utf-8", "replace")
            sys.stdout.write("[%s] %s" % (kernel.name, text))
            sys.stdout.flush()
            console.write(text)
    proc.wait()
    timer.cancel()
    return out


@dataclass
class Result:
    kernel: str
    release: str
    status: str
    seconds: float
    cases: list[tuple[str, str, dict[str, str]]]     # name, outcome, recorded properties
    reasons: dict[str, str] = field(default_factory=dict)   # a case that did not pass: pytest's report of it
    systemd: dict[str, str] = field(default_factory=dict)   # systemd_guest.py's seconds: ready, tests


def results(kernel: Kernel, release: str, out: Path, seconds: float) -> Result:
    status_file = out / "status"
    status = status_file.read_text().strip() if status_file.exists() else "no status (guest died?)"
    cases, reasons = [], {}
    for junit in (out / "junit.xml", out / "junit-systemd.xml"):
        if not junit.exists():
            continue
        for case in ET.parse(junit).iter("testcase"):
            name = "%s::%s" % (case.get("classname", "").rsplit(".", 1)[-1], case.get("name"))
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    outcome = child.tag
                    reasons[name] = child.text or child.get("message") or ""
            props = {p.get("name"): p.get("value") for p in case.iter("property")}
            cases.append((name, outcome, props))
    times = out / "systemd-times"
    systemd = dict(line.split() for line in times.read_text().splitlines()) if times.exists() else {}
    return Result(kernel.name, release, status, seconds, cases, reasons, systemd)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", action="append", choices=[k.name for k in KERNELS])
    ap.add_argument("--setup-only", action="store_true")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--no-systemd", action="store_true", help="leave out the systemd guest's tests")
    ap.add_argument("pytest_args", nargs="*")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the kernel matrix installs packages and boots kernels: run it as root")
    kernels = [k for k in KERNELS if not args.kernel or k.name in args.kernel]
    t0 = time.monotonic()
    releases = setup(kernels)
    say("setup took %.0f s; kernels: %s" % (time.monotonic() - t0, ", ".join(releases.values())))
    if args.setup_only:
        return 0
    if args.bench:
        tables = []
        for k in kernels:
            out = boot(k, releases[k.name], [], bench=True)
            if (out / "bench.md").exists():
                tables.append((out / "bench.md").read_text())
        (STATE / "bench.md").write_text("\n".join(tables))
        say("wrote %s" % (STATE / "bench.md"))
        return 0 if len(tables) == len(kernels) else 1
    # the boots run side by side: most of a guest's time is one busy vCPU
    summary: dict[str, Result] = {}

    def one(k: Kernel) -> None:
        started = time.monotonic()
        say("booting %s (backends %s)" % (releases[k.name], k.backends))
        out = boot(k, releases[k.name], args.pytest_args, systemd=not args.no_systemd)
        summary[k.name] = results(k, releases[k.name], out, time.monotonic() - started)

    threads = [threading.Thread(target=one, args=(k,)) for k in kernels]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    say("summary (%.0f s in all)" % (time.monotonic() - t0))
    for k in kernels:
        r = summary[k.name]
        counts: dict[str, int] = {}
        for _, outcome, _ in r.cases:
            counts[outcome] = counts.get(outcome, 0) + 1
        say("  %s (%s, backends %s): exit %s in %.0f s: %s" % (
            r.kernel, r.release, k.backends, r.status, r.seconds,
            ", ".join("%d %s" % (n, o) for o, n in sorted(counts.items())) or "no results"))
        if r.systemd:
            say("    systemd guest: running after %s s, its tests %s s" % (r.systemd.get("ready"), r.systemd.get("tests")))
        for name, outcome, props in r.cases:
            say("    %-7s %s" % (outcome, name))
            for key, value in props.items():
                say("              %s: %s" % (key, value))
    failures = [r for r in (summary[k.name] for k in kernels)
                if r.status != "0" or not r.cases or any(o != "passed" for _, o, _ in r.cases)]
    for r in failures:
        # last, where a log's tail shows it: what failed and why, or how the guest ended
        say("FAILED on %s: exit %s; %s" % (r.kernel, r.status, ", ".join(
            n for n, o, _ in r.cases if o != "passed") or "no failed test case"))
        for name, reason in r.reasons.items():
            # pytest's "E" lines say what did not hold; its last line, where
            lines = reason.splitlines()
            for line in [l for l in lines if l.startswith("E ")][:REASON_LINES] + lines[-1:]:
                say("  %s | %s" % (name.rsplit("::", 1)[-1], line))
        if not r.reasons:
            tail = (STATE / "out" / r.release / CONSOLE).read_text(errors="replace").splitlines()[-15:]
            for line in tail:
                say("  | " + line)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
