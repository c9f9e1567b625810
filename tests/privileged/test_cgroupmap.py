"""CgroupMap against real cgroups, real fanotify and real processes (root).

Every cgroup is made under the test's own fstrace-test-* cgroup (the
``test_cgroup`` fixture removes it).  The tracepoint source is stood in for by
feeding the map what the cgroup_mkdir/cgroup_rmdir tracepoint sends: id and
path, taken right after each mkdir/rmdir.  Other cgroups on the machine may
change while these tests run, so every check looks only below the test's
cgroup.
"""
import array
import errno
import gc
import json
import os
import select
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

from bpftools.cgroups import map as cgroup_map
from bpftools.cgroups.map import CgroupMap
from bpftools.kernel import fanotify as fan

COMBOS = {
    "sweep": {"sweep"},
    "fanotify": {"fanotify"},
    "sweep+fanotify": {"sweep", "fanotify"},
    "tracepoint": {"tracepoint"},
    "fanotify+tracepoint": {"fanotify", "tracepoint"},
    "all": {"sweep", "fanotify", "tracepoint"},
}
STORM = 300          # cgroups, each entered by a process and removed right after it exits
NESTED_EVERY = 5     # every 5th also gets a child cgroup, the process runs in the child
CHURN = 10_000
MAX_TOMBSTONES = 1_000
# Stated bound (bpftools/cgroups/map.py): a tombstone costs at most 450 bytes plus one per path character,
# on top of a fixed 128 KiB for the map's hash tables, which keep the size of their busiest moment.
TOMBSTONE_BYTES = 450
TABLE_BYTES = 128 * 1024
REPO = Path(__file__).resolve().parents[2]


class Lab:
    """Makes cgroups below the test's cgroup and records what the cgroup tracepoint would send."""

    def __init__(self, mount: str, top_dir: str):
        self.mount = mount
        self.top = top_dir[len(mount):]
        self.records: list[tuple[str, int, str, float]] = []

    def mkdir(self, rel: str) -> tuple[int, str]:
        path = f"{self.top}/{rel}"
        os.mkdir(self.mount + path)
        cgid = os.stat(self.mount + path).st_ino
        self.records.append(("mkdir", cgid, path, time.monotonic()))
        return cgid, path

    def rmdir(self, cgid: int, path: str) -> None:
        os.rmdir(self.mount + path)
        self.records.append(("rmdir", cgid, path, time.monotonic()))

    def run_in(self, path: str) -> str:
        """Run a process inside the cgroup; the cgroup2 path it reports for itself."""
        procs = self.mount + path + "/cgroup.procs"

        def enter():
            with open(procs, "w") as f:
                f.write("0")

        out = subprocess.run(["cat", "/proc/self/cgroup"], preexec_fn=enter, check=True,
                             capture_output=True, text=True).stdout
        return next(line[len("0::"):] for line in out.splitlines() if line.startswith("0::"))

    def settle(self, cgmap: CgroupMap, sources: set[str]) -> list[cgroup_map.CgroupChange]:
        """Deliver what the sources have: half the tracepoint records, fanotify, the other half."""
        records, self.records = self.records, []
        if "tracepoint" not in sources:
            return cgmap.poll()
        half = len(records) // 2
        changes = [c for r in records[:half] for c in cgmap.feed(*r)]
        changes += cgmap.poll()
        return changes + [c for r in records[half:] for c in cgmap.feed(*r)]

    def below(self, changes):
        return [c for c in changes if (c.path + "/").startswith(self.top + "/")]


@pytest.fixture
def lab(cg2_mount, test_cgroup):
    return Lab(cg2_mount, test_cgroup)


@pytest.mark.parametrize("combo", COMBOS)
def test_storm_every_id_resolves_to_its_exact_path(combo, lab):
    sources = COMBOS[combo]
    sees_births = bool(sources & {"fanotify", "tracepoint"})
    sees_existing = bool(sources & {"sweep", "fanotify"})
    keeper_id, keeper = lab.mkdir("keeper")  # exists before the map
    lab.records.clear()
    with CgroupMap(sources, mount=lab.mount) as cgmap:
        assert {name for name, state in cgmap.sources.items() if state == "live"} == sources
        survivor_id, survivor = lab.mkdir("survivor")
        born = []
        for i in range(STORM):
            cells = [lab.mkdir(f"s{i}")]
            if i % NESTED_EVERY == 0:
                cells.append(lab.mkdir(f"s{i}/n"))
            assert lab.run_in(cells[-1][1]) == cells[-1][1]
            for cell in reversed(cells):
                lab.rmdir(*cell)
            born += cells
        changes = lab.below(lab.settle(cgmap, sources))

        for cgid, path in born:
            info = cgmap.resolve(cgid)
            if sees_births:
                assert info is not None, f"{path} (id {cgid}) not resolved"
                assert (info.path, info.alive) == (path, False) and info.removed is not None
                assert cgmap.label(cgid) == path
            else:  # sweep only: cgroups born after the sweep are invisible
                assert info is None and cgmap.label(cgid) == f"unknown:{cgid}"

        if sees_births:
            expected = Counter((action, cgid) for cgid, _ in born for action in ("mkdir", "rmdir"))
            expected[("mkdir", survivor_id)] = 1
            assert Counter((c.action, c.id) for c in changes) == expected
            paths = dict(born + [(survivor_id, survivor)])
            assert all(c.path == paths[c.id] and c.source in sources for c in changes)
            order = [(c.action, c.id) for c in changes]
            assert all(order.index(("mkdir", i)) < order.index(("rmdir", i)) for i, _ in born)
        else:
            assert changes == []

        keeper_info = cgmap.resolve(keeper_id)
        if sees_existing:
            assert (keeper_info.path, keeper_info.alive, keeper_info.created) == (keeper, True, None)
            assert lab.run_in(keeper) == keeper == cgmap.label(keeper_id)
        else:  # tracepoint only: cgroups made before the probe are unknown
            assert keeper_info is None
        survivor_info = cgmap.resolve(survivor_id)
        if sees_births:
            assert (survivor_info.path, survivor_info.alive) == (survivor, True)
        else:
            assert survivor_info is None

        on_disk = {lab.top, keeper, survivor}
        known = {e.path for e in cgmap.entries() if e.alive and (e.path + "/").startswith(lab.top + "/")}
        assert known == ({lab.top, keeper} if sees_existing else set()) | ({survivor} if sees_births else set())
        found = lab.below(cgmap.resweep())
        assert {(c.action, c.path, c.source) for c in found} == {("mkdir", p, "sweep") for p in on_disk - known}
        assert {e.path for e in cgmap.entries() if e.alive and (e.path + "/").startswith(lab.top + "/")} == on_disk


@pytest.mark.parametrize("combo", COMBOS)
def test_tombstone_lives_for_the_ttl_then_goes(combo, lab):
    sources = COMBOS[combo]
    ttl = 0.5
    gone_id, gone = lab.mkdir("gone")
    lab.records.clear()  # the map starts after the mkdir: the tracepoint would only see the rmdir
    with CgroupMap(sources, mount=lab.mount, ttl=ttl) as cgmap:
        lab.rmdir(gone_id, gone)
        lab.settle(cgmap, sources)
        cgmap.resweep()
        info = cgmap.resolve(gone_id)
        assert (info.path, info.alive) == (gone, False)
        time.sleep(ttl / 2)
        assert cgmap.label(gone_id) == gone
        time.sleep(ttl / 2 + 0.1)
        assert cgmap.resolve(gone_id) is None
        assert cgmap.label(gone_id) == f"unknown:{gone_id}"


def _traced(but: array.array) -> int:
    """Bytes tracemalloc sees allocated, less the test's array of ids."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0] - but.buffer_info()[1] * but.itemsize


@pytest.mark.parametrize("combo", ["fanotify", "tracepoint", "sweep+fanotify", "all"])
def test_tombstones_stay_bounded_under_churn(combo, lab):
    """10 000 cgroups made and removed: the map keeps the newest 1000, in bounded memory.

    Memory is what tracemalloc sees allocated while the map runs; the test
    keeps only an array of ids, so what stays allocated is the map's.
    """
    sources = COMBOS[combo]
    churned = array.array("Q")
    with CgroupMap(sources, mount=lab.mount, max_tombstones=MAX_TOMBSTONES) as cgmap:
        tracemalloc.start()
        try:
            before = _traced(churned)
            for i in range(CHURN):
                cgid, path = lab.mkdir(f"c{i}")
                lab.rmdir(cgid, path)
                churned.append(cgid)
                if i % 250 == 249:
                    lab.settle(cgmap, sources)
                if i == CHURN // 2 - 1:
                    halfway = _traced(churned)
            after = _traced(churned)
        finally:
            tracemalloc.stop()
        tombstones = [e for e in cgmap.entries() if not e.alive]
        assert len(tombstones) == MAX_TOMBSTONES
        # Other cgroups removed meanwhile on this machine share the bound: ours
        # that survive must be the newest, in order, each with its exact path.
        ours = [e for e in tombstones if e.path.startswith(lab.top + "/")]
        assert ours and [e.id for e in ours] == churned.tolist()[-len(ours):]
        assert all(e.path == f"{lab.top}/c{CHURN - len(ours) + k}" for k, e in enumerate(ours))
        assert all(cgmap.resolve(cgid) is None for cgid in churned[:-len(ours)])
    bound = MAX_TOMBSTONES * (TOMBSTONE_BYTES + max(len(e.path) for e in tombstones)) + TABLE_BYTES
    print(f"\n{combo}: map memory +{halfway - before} bytes after 5k churned, +{after - before} after 10k; "
          f"{(after - before) / MAX_TOMBSTONES:.0f} bytes per tombstone; bound {bound}")
    assert after - before <= bound
    assert abs(after - halfway) <= bound // 20  # full at 1000: churning 5000 more does not grow it


@pytest.mark.parametrize("combo", ["fanotify", "sweep+fanotify", "all"])
def test_resolve_drains_fanotify_on_a_miss(combo, lab):
    with CgroupMap(COMBOS[combo], mount=lab.mount) as cgmap:
        cgid, path = lab.mkdir("brief")
        lab.rmdir(cgid, path)
        info = cgmap.resolve(cgid)  # no poll() yet: the miss reads the queued events
        assert (info.path, info.alive) == (path, False)
        assert [(c.action, c.id, c.source) for c in lab.below(cgmap.poll())] == [
            ("mkdir", cgid, "fanotify"), ("rmdir", cgid, "fanotify")]
        assert lab.below(cgmap.poll()) == []


def test_fileno_is_readable_when_a_cgroup_appears(lab):
    with CgroupMap({"fanotify"}, mount=lab.mount) as cgmap:
        cgmap.poll()
        poller = select.poll()
        poller.register(cgmap.fileno(), select.POLLIN)
        cgid, path = lab.mkdir("ping")
        assert poller.poll(2000), "fanotify fd not readable after a mkdir"
        assert [(c.action, c.id, c.path) for c in lab.below(cgmap.poll())] == [("mkdir", cgid, path)]


def test_queue_overflow_resweeps(lab):
    limit = int(Path("/proc/sys/fs/fanotify/max_queued_events").read_text())
    with CgroupMap({"fanotify"}, mount=lab.mount) as cgmap:
        victim_id, victim = lab.mkdir("victim")
        assert [c.id for c in lab.below(cgmap.poll())] == [victim_id]
        for i in range(limit // 2 + 100):  # two events each: the queue overflows
            os.mkdir(f"{lab.mount}{lab.top}/f{i}")
            os.rmdir(f"{lab.mount}{lab.top}/f{i}")
        lab.rmdir(victim_id, victim)                 # both events are dropped:
        survivor_id, survivor = lab.mkdir("survivor")  # only the resweep can see them
        changes = lab.below(cgmap.poll())
        swept = {(c.action, c.id) for c in changes if c.source == "sweep"}
        assert swept == {("rmdir", victim_id), ("mkdir", survivor_id)}
        assert (cgmap.resolve(victim_id).alive, cgmap.resolve(survivor_id).alive) == (False, True)
        assert cgmap.label(survivor_id) == survivor


def test_fanotify_off_without_cap_sys_admin_the_map_still_works(lab):
    cgid, path = lab.mkdir("seen-by-sweep")
    code = ("import json, sys; from bpftools.cgroups.map import CgroupMap; "
            "m = CgroupMap({'sweep', 'fanotify'}, mount=sys.argv[1]); "
            "print(json.dumps([m.sources, m.label(int(sys.argv[2])), m.fileno()]))")

    def drop_root():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)

    out = subprocess.run([sys.executable, "-c", code, lab.mount, str(cgid)], preexec_fn=drop_root,
                         cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": os.environ["PATH"]},
                         capture_output=True, text=True, check=True).stdout
    states, label, fileno = json.loads(out)
    assert states["sweep"] == "live" and states["tracepoint"] == "off: not selected"
    # Linux 5.13+ lets anyone make a FID group; the filesystem mark is what needs the capability.
    assert states["fanotify"] in ("off: filesystem marks need CAP_SYS_ADMIN", "off: needs CAP_SYS_ADMIN")
    assert (label, fileno) == (path, None)


def test_real_fanotify_errors_are_typed(cg2_mount):
    fd = fan.fanotify_init(fan.FAN_CLASS_NOTIF | fan.FAN_CLOEXEC | fan.FAN_REPORT_DFID_NAME_TARGET)
    try:
        with pytest.raises(fan.FanotifyUnsupported) as err:  # FID groups cannot have mount marks
            fan.fanotify_mark(fd, fan.FAN_MARK_ADD | fan.FAN_MARK_MOUNT, fan.FAN_CREATE | fan.FAN_ONDIR, cg2_mount)
        assert err.value.errno == errno.EINVAL and str(err.value).startswith(f"fanotify_mark({cg2_mount}): ")
        with pytest.raises(fan.FanotifyUnsupported) as err:  # procfs has no file handles / fsid
            fan.fanotify_mark(fd, fan.FAN_MARK_ADD | fan.FAN_MARK_FILESYSTEM, fan.FAN_CREATE, "/proc")
        assert err.value.errno in (errno.EOPNOTSUPP, errno.ENODEV) and err.value.hint
        with pytest.raises(fan.FanotifyError) as err:
            fan.fanotify_mark(fd, fan.FAN_MARK_ADD | fan.FAN_MARK_FILESYSTEM, fan.FAN_CREATE, "/nonexistent-fstrace")
        assert err.value.errno == errno.ENOENT and type(err.value) is fan.FanotifyError
    finally:
        os.close(fd)
    with pytest.raises(fan.FanotifyUnsupported) as err:
        fan.fanotify_init(0x40000000)  # no such flag
    assert err.value.errno == errno.EINVAL and "5.17+" in str(err.value)


def test_kernfs_file_handle_is_the_cgroup_id(lab):
    cgid, path = lab.mkdir("handle")
    handle, _ = fan.name_to_handle_at(lab.mount + path)
    assert (handle.type, handle.kernfs_id) == (fan.FILEID_KERNFS, cgid)
    mount_fd = os.open(lab.mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = fan.open_by_handle_at(mount_fd, fan.FileHandle.for_kernfs_id(cgid))
        try:
            assert os.readlink(f"/proc/self/fd/{fd}") == lab.mount + path
        finally:
            os.close(fd)
        lab.rmdir(cgid, path)
        with pytest.raises(OSError) as err:
            fan.open_by_handle_at(mount_fd, handle)
        assert err.value.errno == errno.ESTALE
    finally:
        os.close(mount_fd)


def test_feed_needs_a_live_tracepoint_source(lab):
    with CgroupMap({"tracepoint"}, mount=lab.mount) as cgmap:
        with pytest.raises(ValueError, match="unknown cgroup action"):
            cgmap.feed("rename", 5, "/x", 0.0)
        cgmap.disable("tracepoint", "cgroup/cgroup_mkdir: not attached")
        assert cgmap.sources["tracepoint"] == "off: cgroup/cgroup_mkdir: not attached"
        with pytest.raises(ValueError, match="tracepoint source is off"):
            cgmap.feed("mkdir", 5, "/x", 0.0)
