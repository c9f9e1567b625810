import pytest

from bpftools import events
from bpftools.events import Record


def rec(**kw):
    base = dict(ts_ns=5, cgroup_id=77, file_id=3, base_id=0, base_id2=0, ret=0, type=events.REC_FILE,
                op=events.EVENT_CODES["rename"], pid=10, tid=11, uid=0, syscall=316, flags=0, oflags=0,
                fd=-1, dirfd=-100, dirfd2=4, comm=b"mv", name1=b"a\nb", name2=b"\xff/c")
    base.update(kw)
    return Record(**base)


def test_header_is_112_bytes_and_record_max_matches_the_c_struct():
    assert events.HEADER_SIZE == 112
    assert events.RECORD_MAX == 112 + 2 * 4096


def test_encode_decode_round_trip_keeps_raw_bytes():
    r = rec()
    assert events.decode(events.encode(r)) == r
    assert events.decode(events.encode(r)).event == "rename"
    assert events.decode(events.encode(r)).syscall_name == "renameat2"


def test_absent_names_decode_as_none():
    r = rec(name1=None, name2=None)
    assert events.decode(events.encode(r)).name1 is None


def test_a_name_cut_at_path_max_has_no_nul_and_is_kept_whole():
    data = bytearray(events.encode(rec(name1=b"x" * 10, name2=None)))
    data[-1:] = b"y"          # the kernel copied 11 bytes with no NUL
    assert events.decode(bytes(data)).name1 == b"x" * 10 + b"y"


def test_truncated_record_is_an_error():
    data = events.encode(rec())
    with pytest.raises(events.DecodeError):
        events.decode(data[:-3])
    with pytest.raises(events.DecodeError):
        events.decode(data[:50])


def test_unknown_event_code_is_an_error():
    with pytest.raises(events.DecodeError):
        events.decode(events.encode(rec(op=42)))


@pytest.mark.parametrize("spec,expected", [
    ("create,delete", ("create", "delete")),
    ("default", events.DEFAULT_EVENTS),
    ("all", events.EVENT_NAMES),
    ("default,modify", events.DEFAULT_EVENTS + ("modify",)),
    ("delete, delete", ("delete",)),
])
def test_parse_events(spec, expected):
    assert events.parse_events(spec) == expected


def test_parse_events_rejects_unknown_names_naming_the_known_ones():
    with pytest.raises(ValueError, match="unknown event 'write'; known: open, exec"):
        events.parse_events("create,write")


def test_default_leaves_out_reads_and_writes():
    assert "access" not in events.DEFAULT_EVENTS and "modify" not in events.DEFAULT_EVENTS
    assert events.event_mask(["open"]) == 1 and events.event_mask(["rename"]) == 1 << 9
