"""fstrace export scraped by a real Prometheus server: exact counts, a valid exposition, a bounded churn.

Prometheus is Debian's `prometheus` package (installed here when missing;
its packaged service is never started): each test runs its own server on a
free loopback port with a temporary config and storage, scraping every second.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import FSTRACE
from prometheus_client.parser import text_string_to_metric_families

WORKLOADS = Path(__file__).parent / "workloads"
OPS = 250                           # of each event counted.py makes
COUNTED = ("create", "modify", "close_write", "rename", "delete")
STORM = 2000                        # short-lived cgroups
STORM_MAX_SERIES = 200


@pytest.fixture(scope="module")
def prometheus_bin() -> str:
    """prometheus and promtool, from Debian's package (installed without recommends when missing)."""
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, timeout=600)
    return shutil.which("prometheus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 10) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


class Exporter:
    """`fstrace export` on a free loopback port; stop() ends it with SIGTERM and checks it ended cleanly."""

    def __init__(self, *args: str):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d/metrics" % self.port
        self.proc = subprocess.Popen([FSTRACE, "export", "--listen", "127.0.0.1:%d" % self.port, "-i", "0.2", *args],
                                     stderr=subprocess.PIPE, text=True)
        self.news = ""
        while "fstrace: serving" not in self.news:
            line = self.proc.stderr.readline()
            assert line, "fstrace export ended before serving: %s" % self.news
            self.news += line

    def metrics(self) -> str:
        return get(self.url).decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0 and "Traceback" not in err, err


class Prometheus:
    """A Prometheus server of our own scraping one target every second."""

    def __init__(self, binary: str, target_port: int, tmp: Path):
        self.port = free_port()
        config = tmp / "prometheus.yml"
        config.write_text(json.dumps({     # JSON is YAML
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "fstrace", "static_configs": [{"targets": ["127.0.0.1:%d" % target_port]}]}],
        }))
        self.log = tmp / "prometheus.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([binary, "--config.file=%s" % config, "--storage.tsdb.path=%s" % (tmp / "data"),
                                          "--web.listen-address=127.0.0.1:%d" % self.port], stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while True:
            try:
                get("http://127.0.0.1:%d/-/ready" % self.port, timeout=2)
                break
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()[-3000:]
                time.sleep(0.2)

    def query(self, promql: str, at: float | None = None) -> list[dict]:
        params = {"query": promql, **({"time": "%.3f" % at} if at is not None else {})}
        doc = json.loads(get("http://127.0.0.1:%d/api/v1/query?%s" % (self.port, urllib.parse.urlencode(params))))
        assert doc["status"] == "success", doc
        return doc["data"]["result"]

    def value(self, promql: str, at: float | None = None) -> float | None:
        result = self.query(promql, at)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def settled(self, promql: str, quiet: float = 5.0, timeout: float = 90.0) -> float:
        """The value once it exists and has not changed for `quiet` seconds (several scrapes)."""
        deadline = time.monotonic() + timeout
        last, since = self.value(promql), time.monotonic()
        while last is None or time.monotonic() - since < quiet:
            assert time.monotonic() < deadline, "%s never settled (last %s)" % (promql, last)
            time.sleep(0.5)
            now = self.value(promql)
            if now != last:
                last, since = now, time.monotonic()
        return last

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def sample(exposition: str, family: str, **labels) -> float:
    """The value of the one sample of family with these labels in a text exposition."""
    values = [s.value for f in text_string_to_metric_families(exposition) if f.name == family for s in f.samples
              if labels.items() <= s.labels.items()]
    assert len(values) == 1, (family, labels, values)
    return values[0]


def run_in(cgroup_dir: str, argv: list[str]) -> None:
    subprocess.run(argv, check=True, timeout=120,
                   preexec_fn=lambda: Path(cgroup_dir, "cgroup.procs").write_text("0"))


@pytest.fixture
def scraped(request, prometheus_bin, tmp_path):
    """start(*export args) -> (Exporter, Prometheus scraping it); both stopped afterwards."""
    running = []

    def start(*args):
        exporter = Exporter(*args)
        running.append(exporter)
        prom = Prometheus(prometheus_bin, exporter.port, tmp_path)
        running.append(prom)
        prom.settled('up{job="fstrace"}', quiet=0)      # the first scrape comes a few seconds after start
        return exporter, prom

    yield start
    for process in reversed(running):
        process.stop()


def test_increase_in_prometheus_equals_the_workloads_operations(scraped, test_cgroup, cg2_mount, workdir):
    web = os.path.join(test_cgroup, "web.service")
    os.mkdir(web)
    rel = "/" + os.path.relpath(web, cg2_mount)
    exporter, prom = scraped("--include", os.path.relpath(test_cgroup, cg2_mount), "--ttl", "2s")
    workload = [sys.executable, "-B", "-I", str(WORKLOADS / "counted.py"), str(workdir)]

    def series(event):
        return 'fstrace_events_total{job="fstrace",cgroup="%s",unit="web.service",event="%s"}' % (rel, event)

    # Moving into the cgroup is one write (and close) to cgroup.procs, counted in the new cgroup.
    expected = {event: OPS + (event in ("modify", "close_write")) for event in COUNTED}
    everything = 'sum(fstrace_events_total{job="fstrace",cgroup="%s"})' % rel
    run_in(web, workload + ["1"])           # every series exists before the counted run
    prom.settled(everything)
    before = time.time()
    run_in(web, workload + [str(OPS)])
    prom.settled(everything)
    for event in COUNTED:
        # the exact increase: increase() would extrapolate to the edges of its range
        assert prom.value("%s - %s @ %.3f" % (series(event), series(event), before)) == expected[event], event

    os.rmdir(web)                           # its series go 2 s after the cgroup
    deadline = time.monotonic() + 30
    while 'cgroup="%s"' % rel in exporter.metrics():
        assert time.monotonic() < deadline, "series of a removed cgroup outlived --ttl"
        time.sleep(0.2)
    assert sample(exporter.metrics(), "fstrace_cgroup_events", action="rmdir") >= 1


def test_promtool_accepts_the_exposition(scraped, test_cgroup, cg2_mount, workdir):
    rel = "/" + os.path.relpath(test_cgroup, cg2_mount)
    exporter, prom = scraped("--per-process")
    run_in(test_cgroup, [sys.executable, "-B", "-I", str(WORKLOADS / "counted.py"), str(workdir), "5"])
    deadline = time.monotonic() + 60          # the counts appear at the exporter's next tick
    while True:
        text = exporter.metrics()
        ours = {(s.labels["comm"], s.labels["event"], s.value)
                for f in text_string_to_metric_families(text) if f.name == "fstrace_events" for s in f.samples
                if s.labels["cgroup"] == rel}
        if ours >= {("python", "create", 5)} or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert ours >= {("python", "create", 5)}
    check = subprocess.run([shutil.which("promtool"), "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert prom.settled('up{job="fstrace"}') == 1


def test_churn_of_short_lived_cgroups_stays_within_the_series_limit(scraped, test_cgroup, cg2_mount, workdir,
                                                                    tmp_path):
    rel_root = "/" + os.path.relpath(test_cgroup, cg2_mount)
    exporter, prom = scraped("--include", rel_root, "--max-series", str(STORM_MAX_SERIES))
    subprocess.run([sys.executable, str(WORKLOADS / "cgstorm.py"), test_cgroup, str(STORM), str(workdir),
                    str(tmp_path / "expected.json")], check=True, timeout=600)
    overflow = 'fstrace_events_total{job="fstrace",cgroup="__overflow__",event="create"}'
    folded = prom.settled('fstrace_folded_cgroups_total{job="fstrace"}')
    folded_creates = prom.settled(overflow)
    peak = prom.value('max_over_time(count(fstrace_events_total{job="fstrace"})[5m:1s])')
    assert peak <= STORM_MAX_SERIES
    own = prom.query('fstrace_events_total{job="fstrace",cgroup=~"%s/storm-.*",event="create"}' % rel_root)
    own_creates = sum(float(s["value"][1]) for s in own)
    assert own and folded_creates > 0
    assert own_creates + folded_creates == STORM                 # each storm cgroup created one file
    with_series = {s["metric"]["cgroup"] for s in prom.query('fstrace_events_total{job="fstrace",cgroup=~"%s/.*"}'
                                                             % rel_root)}
    # Every cgroup without a series was folded.  A cgroup can also have only some of its events in series
    # of its own: one counted, in the kernel map's order, as the room ran out, or one that was at work when
    # that tick began or ended (the storm's cgroups take turns) -- three at most.
    assert STORM - len(with_series) <= folded <= STORM - len(with_series) + 3
    # machine-wide: other cgroups come and go too
    assert prom.value('fstrace_cgroup_events_total{job="fstrace",action="rmdir"}') >= STORM
    assert prom.value('fstrace_lost_events_total{job="fstrace"}') == 0


def test_ready_answers_503_until_the_probes_are_attached_then_200_with_the_fstrace_metrics():
    port = free_port()
    proc = subprocess.Popen([FSTRACE, "export", "--listen", "127.0.0.1:%d" % port, "-i", "0.2"],
                            stderr=subprocess.PIPE, text=True)
    statuses = []
    try:
        deadline = time.monotonic() + 120
        while not statuses or statuses[-1] != 200:
            assert proc.poll() is None and time.monotonic() < deadline, statuses
            try:
                # /metrics first, /ready after: readiness only ever turns on, so a 503 now means the
                # metrics just read were made before the programs were attached
                metrics = get("http://127.0.0.1:%d/metrics" % port).decode()
                statuses.append(urllib.request.urlopen("http://127.0.0.1:%d/ready" % port, timeout=2).status)
            except urllib.error.HTTPError as e:
                statuses.append(e.code)
                assert b"not attached" in e.read()
                assert "fstrace_build_info" not in metrics
            except OSError:
                pass            # not listening yet
            time.sleep(0.02)
        assert 503 in statuses, "the server answers before the programs are attached: 503 then"
        assert "fstrace_build_info" in get("http://127.0.0.1:%d/metrics" % port).decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err, err
