"""The aggregation model: grouping, the cgroup tree, sorting, drill-in, trends, the report's accumulation."""
import pytest

from bpftools import model
from bpftools.abi import EVENT_CODES, EVENT_NAMES
from bpftools.model import Aggregator, Entry, Focus, Tick

WEB = "/system.slice/web.service"
DB = "/system.slice/db.service"
NESTED = WEB + "/worker"
CGROUPS = {1: "/", 10: WEB, 11: DB, 12: NESTED}
FILES = {100: "/srv/www/index.html", 101: "/srv/www/app.log", 102: "/var/lib/db/data", 103: "/tmp/x"}


def counts(**by_event):
    c = [0] * len(EVENT_NAMES)
    for name, n in by_event.items():
        c[EVENT_CODES[name]] = n
    return tuple(c)


def entry(cg, pid, file, comm=b"nginx", err=0, rb=0, wb=0, **ev):
    return Entry(cg, file, pid, err, comm, counts(**ev), rb, wb)


ENTRIES = [
    entry(10, 42, 100, open=30, close_nowrite=30, access=60, rb=60 * 4096),
    entry(10, 42, 101, modify=200, wb=200 * 100),
    entry(12, 43, 101, comm=b"worker", modify=50, wb=50 * 512),
    entry(11, 50, 102, comm=b"postgres", modify=20, access=10, rb=10 * 8192, wb=20 * 8192),
    entry(1, 1, 103, comm=b"init", create=1, delete=1),
    entry(10, 42, 103, err=2, open=7),                    # 7 failed opens, ENOENT
]


def report_rows(agg, by):
    return model.group_rows(agg.entries(), by, agg.cgroups, agg.files)


def tick(entries=ENTRIES, elapsed=1.0, ts=1000.0, **kw):
    return Tick(ts=ts, elapsed=elapsed, entries=list(entries), cgroups=dict(CGROUPS), files=dict(FILES), **kw)


def by_key(rows):
    return {r.key: r for r in rows}


def test_cgroup_rows_roll_up_every_subtree_and_keep_own_counts():
    rows = by_key(model.group_rows(ENTRIES, "cgroup", CGROUPS, FILES))
    assert set(rows) == {"/", "/system.slice", WEB, DB, NESTED}
    assert rows[NESTED].total == 50
    assert rows[WEB].total == 30 + 30 + 60 + 200 + 50
    assert rows[WEB].extra["own"] == list(counts(open=30, close_nowrite=30, access=60, modify=200))
    assert rows[WEB].failed == 7 and rows[WEB].extra["own_failed"] == 7
    assert rows["/system.slice"].total == rows[WEB].total + rows[DB].total
    assert rows["/"].total == sum(sum(e.counts) for e in ENTRIES if not e.err)
    assert rows["/"].extra["own"] == list(counts(create=1, delete=1))


def test_tree_order_is_depth_first_with_siblings_sorted():
    rows = model.tree(model.group_rows(ENTRIES, "cgroup", CGROUPS, FILES))
    assert [(r.key, r.depth) for r in rows] == [
        ("/", 0), ("/system.slice", 1), (WEB, 2), (NESTED, 3), (DB, 2)]
    rows = model.tree(model.group_rows(ENTRIES, "cgroup", CGROUPS, FILES), reverse=True)
    assert [r.key for r in rows] == ["/", "/system.slice", DB, WEB, NESTED]
    rows = model.tree(model.group_rows(ENTRIES, "cgroup", CGROUPS, FILES), key="read")
    assert [r.key for r in rows][2:] == [WEB, NESTED, DB]      # 60 reads beat 10


def test_tree_rows_without_their_parent_hang_from_the_nearest_ancestor_shown():
    rows = [model.Row("cgroup", p, p, [1] * len(EVENT_NAMES)) for p in ("/a", "/a/b/c", "/d")]
    assert [(r.key, r.depth) for r in model.tree(rows, key="name")] == [("/a", 0), ("/a/b/c", 1), ("/d", 0)]


def test_process_rows_carry_comm_and_cgroup():
    rows = by_key(model.group_rows(ENTRIES, "process", CGROUPS, FILES))
    assert rows[42].label == "nginx[42]" and rows[42].cgroup == WEB
    assert rows[42].total == 320 and rows[42].failed == 7
    assert rows[43].comm == "worker" and rows[43].cgroup == NESTED


def test_file_rows_merge_cgroups_and_name_the_busiest():
    rows = by_key(model.group_rows(ENTRIES, "file", CGROUPS, FILES))
    log = rows["/srv/www/app.log"]
    assert log.counts[EVENT_CODES["modify"]] == 250
    assert log.cgroup == WEB and log.extra["cgroups"] == 2
    assert rows["/tmp/x"].failed == 7


def test_unknown_and_missing_files_get_a_label():
    entries = [entry(10, 1, 0, open=1), entry(10, 1, 999, open=2)]
    rows = by_key(model.group_rows(entries, "file", CGROUPS, FILES))
    assert rows[model.UNKNOWN_FILE].total == 1
    assert rows["unknown:3e7"].total == 2


def test_dir_rows_count_files_directly_inside():
    rows = by_key(model.group_rows(ENTRIES, "dir", CGROUPS, FILES))
    assert rows["/srv/www"].total == 370
    assert rows["/tmp"].total == 2


def test_event_rows_count_distinct_cgroups_processes_files():
    rows = by_key(model.group_rows(ENTRIES, "event", CGROUPS, FILES))
    assert rows["modify"].total == 270
    assert rows["modify"].extra == {"cgroups": 3, "processes": 3, "files": 2}
    assert rows["modify"].cgroup == WEB
    assert rows["open"].total == 30 and rows["open"].failed == 7


def test_sorting_is_by_key_then_name_and_reversible():
    rows = model.group_rows(ENTRIES, "process", CGROUPS, FILES)
    assert [r.key for r in model.sort_rows(rows)] == [42, 43, 50, 1]
    assert [r.key for r in model.sort_rows(rows, "write")] == [42, 43, 50, 1]
    assert [r.key for r in model.sort_rows(rows, "read")] == [42, 50, 1, 43]     # ties by name: init < worker
    assert [r.key for r in model.sort_rows(rows, "name")] == [1, 42, 50, 43]
    assert [r.key for r in model.sort_rows(rows, "name", reverse=True)] == [43, 50, 42, 1]
    assert [r.key for r in model.sort_rows(rows, "failed")][0] == 42
    assert [r.key for r in model.sort_rows(rows, reverse=True)][0] == 1


def test_every_sort_key_is_known_and_others_are_refused():
    row = model.Row("file", "/a", "/a", list(counts(open=1, close_write=2, close_nowrite=3)))
    assert row.klass("close") == 5
    for key in model.SORT_KEYS:
        model.sort_value(row, key)
    with pytest.raises(ValueError, match="unknown sort key"):
        model.sort_value(row, "size")


def test_text_filter_keeps_ancestors_of_matching_tree_rows():
    rows = model.tree(model.group_rows(ENTRIES, "cgroup", CGROUPS, FILES))
    assert [r.key for r in model.text_filter(rows, "WORKER")] == ["/", "/system.slice", WEB, NESTED]
    files = model.group_rows(ENTRIES, "file", CGROUPS, FILES)
    assert [r.key for r in model.text_filter(files, "www/")] == ["/srv/www/index.html", "/srv/www/app.log"]


def test_drill_into_a_cgroup_keeps_its_subtree():
    sub = model.focused(ENTRIES, (Focus("cgroup", WEB, "web.service"),), CGROUPS, FILES)
    assert {e.pid for e in sub} == {42, 43}
    both = model.focused(ENTRIES, (Focus("cgroup", WEB, "web"), Focus("process", 43, "worker[43]")), CGROUPS, FILES)
    assert [e.pid for e in both] == [43]


def test_drill_into_an_event_keeps_only_its_counts():
    sub = model.focused(ENTRIES, (Focus("event", "access", "access"),), CGROUPS, FILES)
    assert sorted(sum(e.counts) for e in sub) == [10, 60]


def test_drill_into_a_file():
    sub = model.focused(ENTRIES, (Focus("file", "/srv/www/app.log", "app.log"),), CGROUPS, FILES)
    assert {e.pid for e in sub} == {42, 43}


def test_cgroup_labels_name_containers_and_pods():
    dock = "/system.slice/docker-" + "ab" * 32 + ".scope"
    assert model.cgroup_label(dock) == "docker:" + ("ab" * 32)[:12]
    assert model.cgroup_label(WEB) == "web.service"
    assert model.cgroup_label("/") == "/"
    pod = "/kubepods.slice/kubepods-pod1234_5678.slice"
    assert model.cgroup_label(pod) == "pod:1234-5678"


def test_snapshot_of_a_drill_in_shows_the_two_tables_below_it():
    agg = Aggregator()
    agg.add(tick())
    snap = model.snapshot(agg, "cgroup", focus=(Focus("cgroup", WEB, "web.service"),))
    assert [by for by, _ in snap.tables] == ["process", "file"]
    assert [r.key for r in snap.tables[0][1]] == [42, 43]
    assert snap.totals[EVENT_CODES["modify"]] == 270 and snap.failed == 7


def test_snapshot_refuses_unknown_groupings_and_sort_keys():
    agg = Aggregator()
    with pytest.raises(ValueError, match="unknown grouping"):
        model.snapshot(agg, "inode")
    with pytest.raises(ValueError, match="unknown sort key"):
        model.snapshot(agg, "file", sort="size")


def test_trends_follow_each_row_over_the_last_ticks():
    agg = Aggregator(history=3)
    for n in (1, 2, 3, 4):
        agg.add(tick([entry(10, 42, 100, open=n)], ts=1000.0 + n))
    row = by_key(agg.rows("process"))[42]
    assert agg.trend(row) == [2, 3, 4]
    web = by_key(agg.rows("cgroup"))["/system.slice"]
    assert agg.trend(web) == [2, 3, 4]
    agg.add(tick([entry(11, 50, 102, open=1)], ts=1005.0))
    assert agg.trend(row) == [3, 4, 0]


def test_a_report_accumulates_every_tick_exactly():
    agg = Aggregator(cumulative=True)
    for i in range(3):
        agg.add(tick(ts=1000.0 + i, overflow=(1,) + (0,) * 10, lost=2))
    total, failed = agg.run_totals()
    assert sum(total) == 3 * sum(sum(e.counts) for e in ENTRIES if not e.err)
    assert failed == 21
    assert sum(agg.overflow) == 3 and agg.lost == 6
    rows = by_key(report_rows(agg, "process"))
    assert rows[42].total == 960
    assert agg.elapsed == 3.0 and agg.first_ts == 999.0 and agg.end_ts == 1002.0


def test_names_learnt_late_still_label_earlier_counts():
    agg = Aggregator(cumulative=True)
    agg.add(Tick(ts=1.0, elapsed=1.0, entries=[entry(10, 1, 555, open=1)], cgroups=CGROUPS, files={}))
    agg.add(Tick(ts=2.0, elapsed=1.0, entries=[entry(10, 1, 555, open=1)], cgroups=CGROUPS, files={555: "/late"}))
    assert by_key(report_rows(agg, "file"))["/late"].total == 2


def test_a_report_beyond_its_entry_bound_folds_new_files_into_one_row():
    agg = Aggregator(cumulative=True, max_entries=2)
    agg.add(tick([entry(10, 1, 100, open=1), entry(10, 1, 101, open=1), entry(10, 1, 102, open=5),
                  entry(10, 1, 103, open=7)]))
    rows = by_key(report_rows(agg, "file"))
    assert rows[model.OTHER_FILES].total == 12
    assert sum(r.total for r in rows.values()) == 14


def test_errors_by_errno_and_event_with_their_worst_offenders():
    agg = Aggregator(cumulative=True)
    agg.add(tick([entry(10, 42, 103, err=2, open=7), entry(10, 43, 100, err=2, open=1, comm=b"w"),
                  entry(11, 50, 102, err=13, create=3, comm=b"pg")]))
    assert agg.errors() == [
        {"errno": "ENOENT", "event": "open", "count": 8, "top_process": "nginx[42]", "top_path": "/tmp/x"},
        {"errno": "EACCES", "event": "create", "count": 3, "top_process": "pg[50]", "top_path": "/var/lib/db/data"},
    ]


def test_cgroup_lifecycle_lists_the_short_lived_first():
    agg = Aggregator(cumulative=True)
    agg.cgroup_change("mkdir", 7, "/job/a", 10.0)
    agg.cgroup_change("mkdir", 8, "/job/b", 10.0)
    agg.cgroup_change("rmdir", 8, "/job/b", 10.25)
    agg.cgroup_change("rmdir", 7, "/job/a", 12.0)
    agg.cgroup_change("rmdir", 9, "/old", 11.0)
    lives = agg.lifecycle()
    assert [(life.path, life.lifetime) for life in lives] == [("/job/b", 0.25), ("/job/a", 2.0), ("/old", None)]


def test_timeline_keeps_per_cgroup_counts_and_halves_its_resolution_when_long():
    agg = Aggregator(cumulative=True)
    for i in range(model.MAX_TIMELINE + 1):
        agg.add(tick([entry(10, 1, 100, open=1), entry(11, 2, 102, open=2)], ts=float(i + 1)))
    assert len(agg.timeline) == (model.MAX_TIMELINE + 1 + 1) // 2
    series = agg.series([10, 11])
    assert series[0] == (0.0, 2.0, [2, 4])
    assert sum(s[2][0] for s in series) == model.MAX_TIMELINE + 1


def test_a_process_is_named_after_its_latest_exec():
    entries = [entry(10, 7, 100, comm=b"sh", open=1), entry(10, 7, 101, comm=b"make", exec=1),
               entry(10, 7, 102, comm=b"sh", close_write=1)]
    assert by_key(model.group_rows(entries, "process", CGROUPS, FILES))[7].label == "make[7]"
    agg = Aggregator(cumulative=True)
    agg.add(tick(entries))
    agg.add(tick([entry(10, 7, 100, comm=b"sh", open=1)]))
    assert agg.comms[7] == b"make"


def test_drill_into_a_cgroup_the_map_could_not_name():
    rows = model.group_rows([entry(77, 1, 100, open=2)], "cgroup", CGROUPS, FILES)
    unknown = next(r for r in rows if r.key == "/unknown:77")
    assert len(model.focused([entry(77, 1, 100, open=2)], (Focus("cgroup", unknown.key, unknown.label),),
                             CGROUPS, FILES)) == 1


def test_cgroup_lifecycle_is_bounded(monkeypatch):
    monkeypatch.setattr(model.aggregate, "MAX_LIVES", 2)
    agg = Aggregator(cumulative=True)
    for i in range(4):
        agg.cgroup_change("mkdir", i, "/c%d" % i, 1.0)
    agg.cgroup_change("rmdir", 1, "/c1", 2.0)
    assert [(life.path, life.lifetime) for life in agg.lifecycle()] == [("/c1", 1.0), ("/c0", None)]


def test_a_failed_exec_does_not_rename_the_process_back():
    """Popen's PATH search: failed execs under the parent's name, then the exec that worked, in any order."""
    tar = [entry(1, 7, 103, comm=b"tar", exec=1),
           entry(1, 7, 104, comm=b"fstrace", err=2, exec=3),
           entry(1, 7, 105, comm=b"fstrace", open=1)]
    for entries in (tar, tar[::-1]):
        agg = Aggregator(cumulative=True)
        agg.add(tick(entries=entries))
        assert [r.comm for r in report_rows(agg, "process")] == ["tar"]
        assert [e["top_process"] for e in agg.errors()] == ["tar[7]"]
        assert [r.comm for r in model.group_rows(entries, "process", CGROUPS, FILES)] == ["tar"]


# --- bytes ----------------------------------------------------------------------------
def test_bytes_add_up_per_row_in_every_grouping_and_roll_up_the_cgroup_tree():
    rows = by_key(model.group_rows(ENTRIES, "cgroup", CGROUPS, FILES))
    assert (rows[NESTED].read_bytes, rows[NESTED].write_bytes) == (0, 50 * 512)
    assert rows[WEB].extra["own_read_bytes"] == 60 * 4096 and rows[WEB].extra["own_write_bytes"] == 20000
    assert rows[WEB].write_bytes == 20000 + 50 * 512                # with the worker below it
    assert rows["/"].read_bytes == 60 * 4096 + 10 * 8192
    assert rows["/"].write_bytes == 20000 + 50 * 512 + 20 * 8192
    files = by_key(model.group_rows(ENTRIES, "file", CGROUPS, FILES))
    assert files["/srv/www/app.log"].write_bytes == 20000 + 50 * 512
    assert files["/srv/www/index.html"].read_bytes == 60 * 4096
    procs = by_key(model.group_rows(ENTRIES, "process", CGROUPS, FILES))
    assert (procs[50].read_bytes, procs[50].write_bytes) == (10 * 8192, 20 * 8192)
    events = by_key(model.group_rows(ENTRIES, "event", CGROUPS, FILES))
    assert (events["access"].read_bytes, events["access"].write_bytes) == (60 * 4096 + 10 * 8192, 0)
    assert (events["modify"].read_bytes, events["modify"].write_bytes) == (0, 20000 + 50 * 512 + 20 * 8192)
    assert events["open"].read_bytes == events["open"].write_bytes == 0


def test_bytes_sort_keys_and_an_event_drill_in_keeps_only_its_bytes():
    rows = model.sort_rows(model.group_rows(ENTRIES, "process", CGROUPS, FILES), "write_bytes")
    assert [r.key for r in rows] == [50, 43, 42, 1]
    assert [r.key for r in model.sort_rows(rows, "read_bytes")][:2] == [42, 50]
    agg = Aggregator()
    agg.add(tick())
    only_reads = agg.rows("process", (Focus("event", "access", "access"),))
    assert sum(r.write_bytes for r in only_reads) == 0
    assert sum(r.read_bytes for r in only_reads) == 60 * 4096 + 10 * 8192


def test_report_accumulates_bytes_over_ticks_and_the_tick_totals():
    agg = Aggregator(cumulative=True)
    for i in range(3):
        agg.add(tick(ts=1000.0 + i))
    assert agg.tick_bytes == (60 * 4096 + 10 * 8192, 20000 + 50 * 512 + 20 * 8192)
    assert agg.bytes_total == [3 * agg.tick_bytes[0], 3 * agg.tick_bytes[1]]
    files = by_key(report_rows(agg, "file"))
    assert files["/var/lib/db/data"].read_bytes == 3 * 10 * 8192
    assert [p[2:] for p in agg.bytes_timeline] == [agg.tick_bytes] * 3


def test_command_rows_add_up_bytes_of_all_their_processes():
    rows = by_key(model.group_rows(ENTRIES, "comm", CGROUPS, FILES))
    assert (rows["nginx"].read_bytes, rows["nginx"].write_bytes) == (60 * 4096, 200 * 100)
    assert rows["postgres"].write_bytes == 20 * 8192
