"""fstrace export: labels, selection, the series limit, TTLs and the exposition, without BPF."""
import socket
import subprocess
import sys
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from bpftools.abi import EVENT_CODES, EVENT_NAMES
from bpftools.cgroups.names import names_from_path
from bpftools.cli.export import DEFAULT_LISTEN, parse_listen
from bpftools.errors import UsageError
from bpftools.export import state as export_state
from bpftools.export.prometheus import Collector, serve
from bpftools.model import Entry, Tick

FSTRACE = str(Path(sys.executable).with_name("fstrace"))
N_EVENTS = len(EVENT_NAMES)
SVC = "/system.slice/nginx.service"
POD = ("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234_abcd.slice/"
       "cri-containerd-" + "ab" * 32 + ".scope")


def counts(**by_event) -> tuple[int, ...]:
    out = [0] * N_EVENTS
    for name, n in by_event.items():
        out[EVENT_CODES[name]] = n
    return tuple(out)


def tick(cgroups: dict[int, str], *entries, lost=0, overflow=None, tracked=0) -> Tick:
    """entries: (cgroup id, pid, comm, {event: n}[, read bytes, write bytes])"""
    return Tick(ts=0.0, elapsed=1.0, cgroups=cgroups, files={},
                entries=[Entry(cg, 0, pid, 0, comm, counts(**ev), *rw) for cg, pid, comm, ev, *rw in entries],
                lost=lost, overflow=overflow or (0,) * N_EVENTS, tracked=tracked)


def moved(state: export_state.ExportState) -> dict:
    """Published bytes as {cgroup: (read, written)}."""
    return {k[0]: rw for k, rw in state.published.moved.items()}


def series(state: export_state.ExportState) -> dict:
    """Published series as {(cgroup, event): n} (cgroup labels only)."""
    return {(k[0], k[-1]): n for k, n in state.published.events.items()}


def started(**limits) -> export_state.ExportState:
    s = export_state.ExportState(export_state.Limits(**limits))
    s.start({"version": "0"})
    return s


@pytest.mark.parametrize("path,depth,label", [
    ("/a/b/c", None, "/a/b/c"),
    ("/a/b/c", 1, "/a"),
    ("/a/b/c", 2, "/a/b"),
    ("/a/b/c", 5, "/a/b/c"),
    ("/", 2, "/"),
])
def test_truncate(path, depth, label):
    assert export_state.truncate(path, depth) == label


@pytest.mark.parametrize("glob,path,hit", [
    ("system.slice", SVC, True),                 # a subtree
    ("/system.slice/", SVC, True),               # slashes do not matter
    ("system.slice/*.service", SVC + "/sub", True),
    ("*.service", SVC, True),                    # * crosses /
    ("user.slice", SVC, False),
    ("system", SVC, False),                      # whole components only
    ("/", SVC, True),
])
def test_glob_selects_path_and_descendants(glob, path, hit):
    assert export_state.glob_selects(glob, path) is hit


def test_selected_include_then_exclude():
    assert export_state.selected(SVC, (), ())
    assert export_state.selected(SVC, ("system.slice",), ())
    assert not export_state.selected("/user.slice", ("system.slice",), ())
    assert not export_state.selected(SVC, ("system.slice",), ("*/nginx.service",))


def test_labels_come_from_the_truncated_path():
    none = ("",) * 4      # no runtime names: the default names_of reads the path only
    assert export_state.cgroup_labels(SVC, None) == (SVC, "nginx.service", "", "") + none
    assert export_state.cgroup_labels(SVC, 1) == ("/system.slice", "", "", "") + none
    label, unit, container, pod = export_state.cgroup_labels(POD, None)[:4]
    assert (label, unit, container, pod) == (POD, "cri-containerd-" + "ab" * 32 + ".scope",
                                             "containerd:abababababab", "1234-abcd")
    assert export_state.cgroup_labels(POD, 3)[2:4] == ("", "1234-abcd")
    assert export_state.cgroup_labels("/unknown:77", None) == (export_state.UNKNOWN, "", "", "") + none


def test_labels_with_the_runtimes_names():
    def names_of(path):
        return replace(names_from_path(path), container_name="web", image="nginx:1.27", pod_name="checkout",
                       pod_namespace="shop")

    assert export_state.cgroup_labels(POD, None, names_of)[4:] == ("web", "nginx:1.27", "checkout", "shop")
    s = export_state.ExportState(export_state.Limits(), names_of=names_of)
    s.start({"version": "0"})
    s.add(tick({5: POD}, (5, 10, b"x", {"create": 2})), now=0)
    (key, n), = s.published.events.items()
    assert key[4:] == ("web", "nginx:1.27", "checkout", "shop", "create") and n == 2


def test_a_container_not_named_yet_is_asked_again():
    known = {}

    def names_of(path):
        return replace(names_from_path(path), **known)

    s = export_state.ExportState(export_state.Limits(), names_of=names_of)
    assert s._labels_of(POD)[4] == ""
    known["container_name"] = "web"
    assert s._labels_of(POD)[4] == "web"
    known["container_name"] = "renamed"
    assert s._labels_of(POD)[4] == "web"      # final once named: one series per cgroup


def test_nothing_is_published_before_start():
    s = export_state.ExportState(export_state.Limits())
    assert s.published is None
    assert list(Collector(s).collect()) == []


def test_counts_accumulate_and_published_copies_do_not_change():
    s = started()
    s.add(tick({5: SVC, 6: "/a"}, (5, 10, b"x", {"create": 2, "modify": 3}), (5, 11, b"y", {"create": 1}),
               (6, 12, b"z", {"delete": 1}), lost=2, tracked=7), now=0)
    first = s.published
    assert series(s) == {(SVC, "create"): 3, (SVC, "modify"): 3, ("/a", "delete"): 1}
    s.add(tick({5: SVC}, (5, 10, b"x", {"create": 4}), lost=1, overflow=counts(open=9), tracked=6), now=1)
    assert series(s) == {(SVC, "create"): 7, (SVC, "modify"): 3, ("/a", "delete"): 1}
    assert first.events[(SVC, "nginx.service", "", "", "", "", "", "", "create")] == 3
    assert (s.published.lost, s.published.tracked) == (3, 6)
    assert s.published.uncounted[EVENT_CODES["open"]] == 9


def test_depth_merges_cgroups_into_one_series():
    s = started(depth=1)
    s.add(tick({5: SVC, 6: "/system.slice/cron.service"}, (5, 1, b"a", {"open": 2}), (6, 2, b"b", {"open": 3})),
          now=0)
    assert series(s) == {("/system.slice", "open"): 5}


def test_include_and_exclude_drop_other_cgroups():
    s = started(include=("system.slice",), exclude=("system.slice/cron.service",))
    s.add(tick({5: SVC, 6: "/system.slice/cron.service", 7: "/user.slice"},
               (5, 1, b"a", {"open": 1}), (6, 2, b"b", {"open": 1}), (7, 3, b"c", {"open": 1})), now=0)
    assert series(s) == {(SVC, "open"): 1}


def test_series_limit_folds_into_overflow_and_counts_each_cgroup_once():
    s = started(max_series=N_EVENTS + 10)              # room for 10 series of their own
    cgroups = {i: "/c%03d" % i for i in range(100)}
    s.add(tick(cgroups, *[(i, i, b"w", {"create": 1, "delete": 1}) for i in range(100)]), now=0)
    own = {k: n for k, n in series(s).items() if k[0] != export_state.OVERFLOW}
    assert len(own) == 10                               # five cgroups, two events each
    assert len(s.published.events) <= s.limits.max_series
    overflow = {k[1]: n for k, n in series(s).items() if k[0] == export_state.OVERFLOW}
    assert overflow == {"create": 95, "delete": 95}
    assert s.published.folded_cgroups == 95
    s.add(tick(cgroups, *[(i, i, b"w", {"create": 1}) for i in range(100)]), now=1)
    assert s.published.folded_cgroups == 95             # the same cgroups again: not counted twice
    assert {k[1]: n for k, n in series(s).items() if k[0] == export_state.OVERFLOW} == {"create": 190, "delete": 95}
    assert series(s)[("/c000", "create")] == 2          # a series keeps counting once it exists


def test_a_new_event_of_a_cgroup_with_series_can_be_folded():
    s = started(max_series=2 * N_EVENTS)
    s.add(tick({1: "/a"}, (1, 1, b"w", {e: 1 for e in EVENT_NAMES})), now=0)
    s.add(tick({1: "/a", 2: "/b"}, (1, 1, b"w", {"open": 1}), (2, 2, b"w", {"open": 1})), now=1)
    assert series(s)[("/a", "open")] == 2
    assert series(s)[(export_state.OVERFLOW, "open")] == 1
    assert s.published.folded_cgroups == 1


def test_removed_cgroups_expire_after_the_ttl_and_free_room():
    s = started(ttl=10, max_series=N_EVENTS + 10)
    s.add(tick({1: "/gone", 2: "/stays"}, (1, 1, b"w", {"create": 5}), (2, 2, b"w", {"create": 1})), now=0)
    s.cgroup_change("rmdir", "/gone", now=1)
    s.add(tick({}), now=10.5)
    assert ("/gone", "create") in series(s)             # 9.5 s after its removal: still there
    s.add(tick({}), now=11)
    assert ("/gone", "create") not in series(s)
    assert series(s)[("/stays", "create")] == 1
    assert s.published.cgroup_changes == {"mkdir": 0, "rmdir": 1}
    s.add(tick({3: "/gone"}, (3, 3, b"w", {"create": 1})), now=12)
    assert series(s)[("/gone", "create")] == 1          # back as a new series, from zero


def test_a_cgroup_made_again_keeps_its_series():
    s = started(ttl=10)
    s.add(tick({1: "/svc"}, (1, 1, b"w", {"open": 1})), now=0)
    s.cgroup_change("rmdir", "/svc", now=1)
    s.cgroup_change("mkdir", "/svc", now=2)
    s.add(tick({2: "/svc"}, (2, 1, b"w", {"open": 1})), now=30)
    assert series(s)[("/svc", "open")] == 2


def test_removing_a_cgroup_below_a_truncated_label_expires_nothing():
    s = started(depth=1, ttl=1)
    s.add(tick({1: "/a/b"}, (1, 1, b"w", {"open": 1})), now=0)
    s.cgroup_change("rmdir", "/a/b", now=0)
    s.add(tick({}), now=5)
    assert series(s) == {("/a", "open"): 1}
    assert s.removed == {}


def test_folded_cgroups_are_forgotten_with_their_cgroup():
    s = started(ttl=1, max_series=N_EVENTS + 10)
    s.add(tick({i: "/c%d" % i for i in range(20)}, *[(i, i, b"w", {"open": 1}) for i in range(20)]), now=0)
    assert s.published.folded_cgroups == 10 and "/c15" in s.folded
    s.cgroup_change("rmdir", "/c15", now=0)
    s.add(tick({}), now=2)
    assert "/c15" not in s.folded and s.removed == {}


def test_per_process_labels_and_idle_expiry():
    s = started(per_process=True, ttl=10)
    assert s.labels == export_state.CGROUP_LABELS + ("comm", "pid", "event")
    s.add(tick({1: SVC}, (1, 42, b"nginx", {"open": 1}), (1, 43, b"nginx", {"open": 2})), now=0)
    assert s.published.events[(SVC, "nginx.service", "", "", "", "", "", "", "nginx", "42", "open")] == 1
    s.add(tick({1: SVC}, (1, 43, b"nginx", {"open": 1})), now=9)
    s.add(tick({}), now=10)
    assert [k[-2] for k in s.published.events] == ["43"]     # pid 42 idle for 10 s: gone
    assert s.by_cgroup == {SVC: {(SVC, "nginx.service", "", "", "", "", "", "", "nginx", "43", "open")}}
    s.add(tick({}), now=19)
    assert s.published.events == {} and s.by_cgroup == {}


def test_overflow_series_have_every_label():
    s = started(per_process=True, max_series=N_EVENTS + 10)
    s.add(tick({i: "/c%d" % i for i in range(30)}, *[(i, i, b"w", {"open": 1}) for i in range(30)]), now=0)
    key = (export_state.OVERFLOW,) + ("",) * 9 + ("open",)
    assert s.published.events[key] == 20


@pytest.mark.parametrize("text,parsed", [
    ("127.0.0.1:19435", ("127.0.0.1", 19435)),
    (":9", ("0.0.0.0", 9)),
    ("[::1]:80", ("::1", 80)),
    ("localhost:65535", ("localhost", 65535)),
])
def test_parse_listen(text, parsed):
    assert parse_listen(text) == parsed


@pytest.mark.parametrize("text", ["19435", "127.0.0.1", "1.2.3.4:0", "1.2.3.4:65536", "::1:80", "[]:80", "h:p"])
def test_parse_listen_refuses(text):
    with pytest.raises(UsageError, match="bad --listen"):
        parse_listen(text)


def test_default_listen_is_loopback():
    assert parse_listen(DEFAULT_LISTEN)[0] == "127.0.0.1"


@pytest.fixture
def served():
    """A real HTTP server on a free loopback port over a state with a few series."""
    s = export_state.ExportState(export_state.Limits(max_series=N_EVENTS + 10))
    s.start({"version": "0.1.0", "backend": "tracepoint", "kernel": "6.18", "python": "3"})
    s.cgroup_change("mkdir", "/x", now=0)              # published with the next tick
    s.add(tick({i: "/c%d" % i for i in range(12)}, *[(i, i, b"w", {"open": 1}) for i in range(12)], tracked=4),
          now=0)
    server, thread = serve(s, "127.0.0.1", 0)
    try:
        yield "http://127.0.0.1:%d/metrics" % server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def fetch(url: str, accept: str | None = None) -> tuple[str, str]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers["Content-Type"], r.read().decode()


def test_text_format_by_default(served):
    ctype, body = fetch(served)
    assert ctype.startswith("text/plain; version=0.0.4")
    fams = {f.name: f for f in parse_text(body)}
    events = {(s.labels["cgroup"], s.labels["event"]): s.value for s in fams["fstrace_events"].samples}
    assert events[(export_state.OVERFLOW, "open")] == 2 and len(events) == 11
    assert fams["fstrace_folded_cgroups"].samples[0].value == 2
    assert fams["fstrace_cgroups_tracked"].samples[0].value == 4
    assert {s.labels["action"]: s.value for s in fams["fstrace_cgroup_events"].samples} == {"mkdir": 1, "rmdir": 0}
    assert fams["fstrace_build_info"].samples[0].labels["backend"] == "tracepoint"
    assert "process_cpu_seconds" in fams


def test_openmetrics_when_asked(served):
    ctype, body = fetch(served, "application/openmetrics-text; version=1.0.0")
    assert ctype.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith("# EOF\n")
    fams = {f.name: f for f in parse_openmetrics(body)}
    assert fams["fstrace_events"].type == "counter"
    assert fams["fstrace_build"].type == "info"


def one_line_error(args: list[str], message: str) -> None:
    proc = subprocess.run([FSTRACE, "export", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith(message), proc.stderr
    assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize("args,message", [
    (["--listen", "localhost"], "fstrace: error: bad --listen 'localhost': give HOST:PORT"),
    (["--listen", "no.such.host.invalid:1"], "fstrace: error: cannot listen on no.such.host.invalid:1:"),
    (["--ttl", "soon"], "fstrace: error: bad duration 'soon'"),
    (["--max-series", "5"], "fstrace: error: Invalid value for '--max-series': 5 is not in the range x>=22."),
    (["--cgroup-depth", "0"], "fstrace: error: Invalid value for '--cgroup-depth'"),
    (["-i", "0"], "fstrace: error: bad --interval 0: give a positive number of seconds"),
])
def test_bad_input_is_one_line(args, message):
    one_line_error(args, message)


def test_a_port_in_use_is_one_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        one_line_error(["--listen", "127.0.0.1:%d" % port],
                       "fstrace: error: cannot listen on 127.0.0.1:%d: Address already in use" % port)


def test_help_ends_with_examples():
    out = subprocess.run([FSTRACE, "export", "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "Examples:" in out and "fstrace export --listen :19435 --cgroup-depth 3" in out


def test_docs_name_every_option_and_metric():
    import click

    from bpftools.cli.export import export_command

    text = (Path(__file__).resolve().parents[2] / "docs/export.md").read_text()
    for param in export_command.params:
        if isinstance(param, click.Option):
            for opt in param.opts:
                assert "**%s**" % opt in text, opt
    s = started()
    s.add(tick({1: SVC}, (1, 1, b"w", {"open": 1})), now=0)
    for family in Collector(s).collect():
        name = family.name + ("_info" if family.type == "info" else "_total" if family.type == "counter" else "")
        assert "`%s`" % name in text, name


def test_bytes_accumulate_per_label_set_and_follow_their_series_into_overflow_and_expiry():
    s = started(ttl=10, max_series=2 * N_EVENTS)        # room for N_EVENTS series of their own
    s.add(tick({1: "/a", 2: "/b"}, (1, 1, b"w", {"access": 2, "modify": 1}, 8192, 100),
               (2, 2, b"w", {"modify": 3}, 0, 4096)), now=0)
    s.add(tick({1: "/a"}, (1, 1, b"w", {"access": 1}, 10, 0)), now=1)
    assert moved(s) == {"/a": (8202, 100), "/b": (0, 4096)}
    # a cgroup whose modify series finds no room: its bytes go to the overflow bytes series
    s.add(tick({i: "/c%d" % i for i in range(3, 20)},
               *[(i, i, b"w", {"modify": 1}, 0, 7) for i in range(3, 20)]), now=2)
    assert len([k for k in s.published.events if k[0] != export_state.OVERFLOW]) == N_EVENTS
    own = sum(1 for k in s.published.moved if k[0] != export_state.OVERFLOW)
    assert own == N_EVENTS - 1                          # "/a" has two series, one bytes series
    assert moved(s)[export_state.OVERFLOW] == (0, 7 * (17 - (N_EVENTS - 3)))
    assert sum(w for _, w in moved(s).values()) == 100 + 4096 + 7 * 17      # nothing lost
    s.cgroup_change("rmdir", "/a", now=3)
    s.add(tick({}), now=13)
    assert "/a" not in moved(s) and moved(s)["/b"] == (0, 4096)


def test_bytes_metrics_are_exposed_with_the_labels_of_events_minus_event():
    s = started()
    s.add(tick({1: SVC}, (1, 1, b"w", {"access": 1, "modify": 1}, 123, 456)), now=0)
    fams = {f.name: f for f in Collector(s).collect()}
    read, = fams["fstrace_read_bytes"].samples
    assert tuple(read.labels) == s.labels[:-1] and "event" not in read.labels         # events' labels but event
    assert (read.labels["cgroup"], read.labels["unit"], read.labels["container"]) == (SVC, "nginx.service", "")
    assert read.value == 123 and fams["fstrace_write_bytes"].samples[0].value == 456
    s.moved_bytes = False                               # a backend that cannot know bytes
    assert "fstrace_read_bytes" not in {f.name for f in Collector(s).collect()}
