import json

import pytest

from bpftools.cgroups.names import Names
from bpftools.cgroups.select import split_specs as split_cgroup_specs
from bpftools.escape import decode_fs, decode_name, errno_name, fs_text, terminal_safe, text_name
from bpftools.session.contract import FileEvent
from bpftools.views import jsonl, text


def ev(**kw):
    base = dict(ts=1763780000.123456, event="rename", dir=False, path=b"/srv/a\x1b.txt", path2=b"/srv/\xffb",
                pid=4242, tid=4243, ppid=1, uid=0, comm=b"nginx", cgroup_id=8123,
                cgroup="/system.slice/nginx.service", names=Names(unit="nginx.service", slice="system.slice"),
                ret=0, syscall="renameat2")
    base.update(kw)
    return FileEvent(**base)


def test_decode_name_escapes_invalid_utf8_without_dropping_bytes():
    assert decode_name(b"caf\xc3\xa9-\xff") == "café-\\xff"
    assert decode_name(None) is None


@pytest.mark.parametrize("raw,safe", [
    ("a\nb", "a\\nb"), ("\x1b[31m", "\\x1b[31m"), ("tab\there", "tab\\there"), ("\x7f\x85", "\\x7f\\x85"),
    ("é ok", "é ok"), ("nl\\nname", "nl\\\\nname"), ("rtl\u202etxt", "rtl\\u202etxt"),
    ("\u2066iso\u2069", "\\u2066iso\\u2069"), ("zero\u200bwidth", "zero\\u200bwidth"),
    ("bad\udcff", "bad\\xff"),
])
def test_terminal_safe(raw, safe):
    assert terminal_safe(raw) == safe


def test_a_backslash_and_a_newline_never_look_alike_in_text():
    assert text_name(b"nl\\nname") == "nl\\\\nname"          # the name has a backslash and an n
    assert text_name(b"nl\nname") == "nl\\nname"               # the name has a newline
    assert text_name(b"x\xff\\xff") == "x\\xff\\\\xff"          # an undecodable byte, then the text \xff


def test_json_keeps_names_exact_while_text_escapes_them():
    raw = b"/srv/back\\slash-rtl\xe2\x80\xaetxt-\x1b"
    assert decode_name(raw) == "/srv/back\\slash-rtl\u202etxt-\x1b"
    assert decode_fs(fs_text(raw)) == decode_name(raw)
    line = text.event_line(ev(path=raw, path2=None, event="create"), colour=False)
    assert line.endswith("/srv/back\\\\slash-rtl\\u202etxt-\\x1b")
    assert json.loads(json.dumps(jsonl.event_record(ev(path=raw))))["path"] == "/srv/back\\slash-rtl\u202etxt-\x1b"


def test_errno_name():
    assert errno_name(-2) == "ENOENT"
    assert errno_name(0) is None
    assert errno_name(-4095) == "E4095"


def test_json_event_record_follows_the_field_table():
    rec = jsonl.event_record(ev())
    assert list(rec) == [k for k, _ in jsonl.EVENT_FIELDS]
    assert rec["path"] == "/srv/a\x1b.txt" and rec["path2"] == "/srv/\\xffb"
    assert rec["unit"] == "nginx.service" and rec["container"] is None
    line = jsonl._dumps(rec)
    assert "\x1b" not in line and json.loads(line)["path"] == "/srv/a\x1b.txt"


@pytest.mark.parametrize("event", [ev(), ev(path2=None, ret=-13, cgroup=None, names=Names(), ppid=None, dir=True)])
def test_the_reference_json_line_is_exactly_event_record(event):
    line = jsonl.event_json(event).rstrip("\n")     # what the compiled formatter is held to
    assert json.loads(line) == jsonl.event_record(event)
    assert line == jsonl._dumps(jsonl.event_record(event))


def test_text_line_is_aligned_escaped_and_coloured_only_when_asked():
    plain = text.event_line(ev(), colour=False)
    assert "\x1b" not in plain
    assert "nginx.service" in plain and "nginx[4242]" in plain
    assert plain.endswith("/srv/a\\x1b.txt -> /srv/\\xffb")
    coloured = text.event_line(ev(), colour=True)
    assert "\x1b[33mrename" in coloured


def test_text_line_shows_errno_and_dir_marker():
    line = text.event_line(ev(event="delete", dir=True, path2=None, ret=-39), colour=False)
    assert "delete/" in line and line.endswith("ENOTEMPTY")


def test_unknown_cgroup_is_labelled_with_its_id():
    line = text.event_line(ev(cgroup=None, names=Names()), colour=False)
    assert "unknown:8123" in line


def test_shorten_middle():
    assert text.shorten_middle("abcdefghij", 5) == "ab…ij"
    assert text.shorten_middle("abc", 5) == "abc"


def test_split_cgroup_specs():
    paths, ids, globs = split_cgroup_specs(
        ["system.slice/nginx.service", "/sys/fs/cgroup/unified/a/b", "42", "system.slice/*.service", "/"],
        "/sys/fs/cgroup/unified")
    assert paths == ["/system.slice/nginx.service", "/a/b", "/"]
    assert ids == [42]
    assert globs == ["system.slice/*.service"]


def test_json_renders_a_cgroup_name_that_is_not_utf8_like_a_path():
    import io
    import os
    cgroup = os.fsdecode(b"/bad-\xff.service")
    out = io.BytesIO()
    out.write(jsonl.JsonSink(out).cgroup_text(8123, cgroup, Names()))
    assert json.loads(b"{" + out.getvalue() + b"}")["cgroup"] == "/bad-\\xff.service"
    assert json.loads(jsonl.event_json(ev(cgroup=cgroup)))["cgroup"] == "/bad-\\xff.service"


def test_text_loss_is_said_at_most_once_a_second_and_every_record_is_counted():
    import io

    from bpftools.session.contract import Totals
    now = [100.0]
    err = io.StringIO()
    sink = text.TextSink(io.BytesIO(), err, colour=False, clock=lambda: now[0])
    for i in range(69):                 # 69 single losses over 3.4 s
        sink.lost(1, 0.0)
        now[0] += 0.05
    totals = Totals()
    totals.events, totals.lost = 10, 69
    sink.summary(0.0, totals, "tracepoint", 3.45)
    lines = err.getvalue().splitlines()
    said = [int(line.split()[2]) for line in lines if line.startswith("fstrace: lost ")]
    assert len(said) == 5 and said[0] == 1 and sum(said) == 69
    assert lines[-1] == "fstrace: 10 events in 3.5 s, 69 lost"


def test_trace_says_each_thing_once_with_the_true_reason():
    from bpftools.session.contract import StartInfo
    info = StartInfo(backend="tracepoint", kernel="6.18.44", headers="headers 6.1.0 do not match running kernel 6.18.44",
                     headers_match=False, tracepoints=[], skipped={}, missing_syscalls=[],
                     cgroup_sources={"sweep": "live"}, events=("open",), command_cgroup=None,
                     backend_reasons={"fentry": "loading an fentry program failed: EPERM (Operation not permitted)",
                                      "kprobe": "this kernel has no kprobe support"},
                     passed_over=("fentry", "kprobe"), armed={}, blind_spots=["writes through mmap", "io_uring"])
    assert text.start_lines(info) == [
        "fstrace: backend tracepoint on kernel 6.18.44; events: open",
        "fstrace: not using fentry: loading an fentry program failed: EPERM (Operation not permitted)",
        "fstrace: not using kprobe: this kernel has no kprobe support",
        "fstrace: tracepoint does not see: writes through mmap; io_uring"]
    from dataclasses import replace
    forced = text.start_lines(replace(info, backend="kprobe", passed_over=()))
    assert not any("headers" in line for line in forced)   # struct offsets come from BTF, not headers
