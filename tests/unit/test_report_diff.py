"""report --diff: two runs compared per cgroup, process name and file (pure model, and its formats)."""
import io
import json

import pytest
from rich.console import Console

from bpftools.abi import EVENT_NAMES
from bpftools.model import diff as md
from bpftools.views import diff as vd

ZERO = {e: 0 for e in EVENT_NAMES}


def evs(**counts):
    return {**ZERO, **counts}


def doc(files=(), processes=(), cgroups=(), top=0, filters=(), lost=0, source=None, failed=0):
    """A report --json document with just the keys a diff reads."""
    d = {"type": "report", "version": 1,
         "scope": {"command": ["./job.sh"], "command_cgroup": None, "exit_status": 0, "filters": list(filters)},
         "top": top, "totals": {"events": 0, "failed": failed, "lost": lost, "overflow": 0, "by_event": evs()},
         "cgroups": [{"path": p, "events": e, "failed": 0} for p, e in cgroups],
         "processes": [{"pid": pid, "comm": c, "events": e, "failed": 0} for pid, c, e in processes],
         "files": [{"path": p, "events": e, "failed": f} for p, e, f in files]}
    for r in d["files"]:
        for k, v in r["events"].items():
            d["totals"]["by_event"][k] += v
    if source is not None:
        d["source"] = source
    return d


def side(name, **kw):
    return md.side_from_document(doc(**kw), name)


def rows(d, table="file"):
    return {r.key: r for r in d.tables[table]}


BEFORE = side("a.json", files=[("/w/only-a", evs(create=1, modify=1), 0), ("/w/grow", evs(modify=10), 0),
                               ("/w/same", evs(open=3), 0), ("/w/kept", evs(create=1), 0)])
AFTER = side("b.json", files=[("/w/only-b", evs(create=1, modify=1), 0), ("/w/grow", evs(modify=50), 0),
                              ("/w/same", evs(open=3), 0), ("/w/kept", evs(create=1, delete=1), 0)])


def test_new_vanished_and_changed_files():
    d = md.diff(BEFORE, AFTER)
    r = rows(d)
    assert r["/w/only-a"].status == "vanished" and r["/w/only-a"].after is None
    assert r["/w/only-b"].status == "new" and r["/w/only-b"].before is None
    assert r["/w/grow"].status == "changed"
    assert r["/w/grow"].before[EVENT_NAMES.index("modify")] == 10
    assert r["/w/grow"].after[EVENT_NAMES.index("modify")] == 50
    assert r["/w/kept"].delta()[EVENT_NAMES.index("delete")] == 1
    assert "/w/same" not in r and d.unchanged["file"] == 1
    assert d.counts("file") == {"new": 1, "vanished": 1, "changed": 2}


def test_rows_are_sorted_by_the_size_of_the_change():
    d = md.diff(BEFORE, AFTER)
    assert [(r.key, r.change) for r in d.tables["file"]] == [
        ("/w/grow", 40), ("/w/only-a", 2), ("/w/only-b", 2), ("/w/kept", 1)]


def test_the_json_rows_carry_before_and_after_as_event_dicts():
    out = json.loads(json.dumps(vd.document(md.diff(BEFORE, AFTER))))
    files = {r["path"]: r for r in out["files"]}
    assert files["/w/only-a"]["before"] == evs(create=1, modify=1) and files["/w/only-a"]["after"] is None
    assert files["/w/only-b"]["before"] is None and files["/w/only-b"]["after"]["create"] == 1
    assert (files["/w/grow"]["before"]["modify"], files["/w/grow"]["after"]["modify"]) == (10, 50)
    assert files["/w/grow"]["delta"] == {"modify": 40} and files["/w/grow"]["change"] == 40
    assert out["type"] == "diff" and out["version"] == 1
    assert out["counts"]["files"] == {"new": 1, "vanished": 1, "changed": 2, "unchanged": 1}
    assert out["totals"]["delta"] == {"modify": 40, "delete": 1}
    assert list(out) == ["type", "version", "before", "after", "events", "maps", "top", "totals", "cgroups",
                         "processes", "files", "counts", "notes"]


def test_a_commands_transient_cgroup_is_the_same_cgroup_in_every_run():
    a = side("a", cgroups=[("/", evs()), ("/fstrace-run-100-aaaaaa", evs(create=2)),
                           ("/fstrace-run-100-aaaaaa/sub", evs(create=1))])
    b = side("b", cgroups=[("/", evs()), ("/fstrace-run-200-bbbbbb", evs(create=5)),
                           ("/fstrace-run-200-bbbbbb/sub", evs(create=1))])
    d = md.diff(a, b)
    assert [(r.key, r.status, r.change) for r in d.tables["cgroup"]] == [("/fstrace-run-*", "changed", 3)]
    assert d.unchanged["cgroup"] == 1      # /fstrace-run-*/sub; "/" had nothing of its own


def test_a_commands_transient_scope_is_the_same_cgroup_in_every_run():
    a = side("a", cgroups=[("/system.slice/fstrace-run-100-aaaaaa.scope", evs(create=2)),
                           ("/system.slice/nginx.service", evs(create=1))])
    b = side("b", cgroups=[("/system.slice/fstrace-run-200-bbbbbb.scope", evs(create=5)),
                           ("/system.slice/nginx.service", evs(create=1))])
    d = md.diff(a, b)
    assert [(r.key, r.status, r.change) for r in d.tables["cgroup"]] == [
        ("/system.slice/fstrace-run-*.scope", "changed", 3)]
    assert md.command_cgroup("/system.slice/fstrace-run-1-ab.scope/x") == "/system.slice/fstrace-run-*.scope/x"
    assert md.command_cgroup("/system.slice/fstrace-run-1-ab.scopex") == "/system.slice/fstrace-run-1-ab.scopex"


def test_processes_compare_by_name_not_pid():
    a = side("a", processes=[(10, "sh", evs(open=2)), (11, "sh", evs(open=1)), (12, "gcc", evs(open=5))])
    b = side("b", processes=[(90, "sh", evs(open=3)), (91, "ld", evs(open=1))])
    d = md.diff(a, b)
    r = rows(d, "process")
    assert "sh" not in r and d.unchanged["process"] == 1
    assert r["gcc"].status == "vanished" and r["ld"].status == "new"
    out = vd.document(d)
    gcc = next(p for p in out["processes"] if p["comm"] == "gcc")
    assert (gcc["processes_before"], gcc["processes_after"]) == (1, 0)


def test_a_plain_map_reads_befores_directory_as_afters():
    a = side("a", files=[("/tmp/run.1/out", evs(create=1), 0), ("/tmp/run.10/x", evs(create=1), 0)])
    b = side("b", files=[("/tmp/run.2/out", evs(create=1), 0)])
    d = md.diff(a, b, (md.parse_map("/tmp/run.1=/tmp/run.2"),))
    assert [(r.key, r.status) for r in d.tables["file"]] == [("/tmp/run.10/x", "vanished")]   # whole components


def test_a_glob_map_renames_both_sides():
    a = side("a", files=[("/tmp/tmp.AbC/f", evs(modify=1), 0)])
    b = side("b", files=[("/tmp/tmp.XyZ/f", evs(modify=3), 0), ("/tmp/tmp.XyZ", evs(create=1), 0)])
    d = md.diff(a, b, (md.parse_map("/tmp/tmp.*=/tmp/TMP"),))
    assert [(r.key, r.status, r.change) for r in d.tables["file"]] == [("/tmp/TMP/f", "changed", 2),
                                                                         ("/tmp/TMP", "new", 1)]


@pytest.mark.parametrize("spec", ["nothing", "tmp/a=/tmp/b", "/tmp/a=b", "=/x"])
def test_a_bad_map_says_how_to_write_one(spec):
    with pytest.raises(ValueError, match="give OLD=NEW, two absolute paths"):
        md.parse_map(spec)


def test_only_events_both_sides_recorded_are_compared():
    a = side("a", files=[("/w/x", evs(modify=7, create=1), 0), ("/w/read", evs(access=4), 0)])
    b = side("b", files=[("/w/x", evs(create=1), 0)],
             source={"file": "b.jsonl", "kind": "trace", "events_traced": list(md.EVENT_NAMES[:2]) + [
                 "attrib", "close_write", "close_nowrite", "create", "delete", "rename"], "failed_traced": False})
    d = md.diff(a, b)
    assert d.tables["file"] == [] and d.unchanged["file"] == 1      # /w/read had only reads: nothing to compare
    assert "access" not in d.events and "modify" not in d.events
    assert any("not compared, not recorded on both sides: access, modify" in n for n in d.notes)
    assert any("failed operations not compared" in n for n in d.notes)


def test_a_cut_report_and_loss_are_noted():
    d = md.diff(side("a", top=10, lost=3), side("b"))
    assert any("BEFORE (a) holds only its top 10 rows" in n for n in d.notes)
    assert any("BEFORE (a) lost 3 records" in n for n in d.notes)


def test_different_filters_are_noted():
    d = md.diff(side("a", filters=["--path /srv"]), side("b"))
    assert "BEFORE (a) counted with --path /srv, AFTER (b) without filters: what only one of them counted " \
        "compares as new or vanished" in d.notes
    assert not any("counted with" in n for n in md.diff(side("a"), side("b")).notes)


def test_a_document_that_is_no_report_is_refused():
    with pytest.raises(md.DiffInputError, match="not a report --json document"):
        md.side_from_document({"type": "diff"}, "x")
    with pytest.raises(md.DiffInputError, match="newer fstrace"):
        md.side_from_document({"type": "report", "version": 2}, "x")
    with pytest.raises(md.DiffInputError, match="without the keys of version 1"):
        md.side_from_document({"type": "report", "version": 1, "cgroups": []}, "x")


def test_tables_mark_new_and_vanished_rows_with_signed_deltas():
    console = Console(file=io.StringIO(), width=140, no_color=True)
    vd.print_diff(md.diff(BEFORE, AFTER), console)
    text = console.file.getvalue()
    line = next(ln for ln in text.splitlines() if "/w/grow" in ln)
    assert line.split() == ["/w/grow", "10", "50", "40", "+40"]
    line = next(ln for ln in text.splitlines() if "/w/only-a" in ln)
    assert line.split()[:5] == ["vanished", "/w/only-a", "2", "-", "2"] and "-1" in line.split()
    assert any(ln.split()[:2] == ["new", "/w/only-b"] for ln in text.splitlines())
    assert "Files: 1 new, 1 vanished, 2 changed, 1 unchanged" in text
    assert "events 16 → 57 (+41)" in text


def test_top_cuts_tables_and_pictures_and_the_json_only_when_asked():
    d = md.diff(BEFORE, AFTER)
    assert len(vd.document(d)["files"]) == 4 and len(vd.document(d, top=1)["files"]) == 1
    svg = vd.to_svg(d, top=1)
    assert svg.startswith("<svg") and "grow" in svg and "only" not in svg
    assert "@font-face" not in svg and "url(http" not in svg          # nothing fetched from the network
    assert svg.count("<svg") == 3 and "Largest changes" in svg     # the bars, then rich's tables
    page = vd.to_html(d)
    assert "<title>fstrace report --diff</title>" in page and "/w/only-b" in page
    assert "file /w/only-b (new)" in page and 'fill="#2ca02c"' in page and 'fill="#d62728"' in page


def test_the_man_page_names_every_key_of_the_diff_document():
    import re
    from pathlib import Path
    man = (Path(__file__).resolve().parents[2] / "man/fstrace.8").read_text()
    section = man.split(".SS DIFF JSON")[1].split("\n.SH ")[0]
    named = set(re.findall(r"^\.BR? (\w+)", section, re.M)) | set(re.findall(r"^\.RB \( (\w+)", section, re.M))
    doc = vd.document(md.diff(BEFORE, side("c", processes=[(1, "sh", evs(open=1))])))
    keys = set(doc) | set(doc["before"]) | set(doc["totals"]) | set(doc["counts"]["files"])
    keys |= {k for t in ("cgroups", "processes", "files") for r in doc[t] for k in r}
    assert keys - named == set()
