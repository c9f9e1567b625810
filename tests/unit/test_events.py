import pytest

from bpftools import abi
from bpftools.abi import Record


def rec(**kw):
    base = dict(ts_ns=5, cgroup_id=77, file_id=3, base_id=0, base_id2=0, ret=0, lat_ns=0, type=abi.REC_FILE,
                op=abi.EVENT_CODES["rename"], pid=10, tid=11, uid=0, syscall=316, flags=0, oflags=0,
                fd=-1, dirfd=-100, dirfd2=4, comm=b"mv", name1=b"a\nb", name2=b"\xff/c")
    base.update(kw)
    return Record(**base)


def test_header_is_120_bytes_and_record_max_matches_the_c_struct():
    assert abi.HEADER_SIZE == 120
    assert abi.RECORD_MAX == 120 + 2 * 4096


def test_a_timed_record_keeps_its_latency_and_an_untimed_one_has_none():
    timed = abi.decode(abi.encode(rec(op=abi.EVENT_CODES["access"], syscall=0, lat_ns=300_123_456,
                                      flags=abi.F_TIMED)))
    assert timed.latency_ns == 300_123_456
    assert abi.decode(abi.encode(rec(lat_ns=5))).latency_ns is None     # no F_TIMED: not timed


def test_encode_decode_round_trip_keeps_raw_bytes():
    r = rec()
    assert abi.decode(abi.encode(r)) == r
    assert abi.decode(abi.encode(r)).event == "rename"
    assert abi.decode(abi.encode(r)).syscall_name == "renameat2"


def test_absent_names_decode_as_none():
    r = rec(name1=None, name2=None)
    assert abi.decode(abi.encode(r)).name1 is None


def test_a_name_cut_at_path_max_has_no_nul_and_is_kept_whole():
    data = bytearray(abi.encode(rec(name1=b"x" * 10, name2=None)))
    data[-1:] = b"y"          # the kernel copied 11 bytes with no NUL
    assert abi.decode(bytes(data)).name1 == b"x" * 10 + b"y"


def test_truncated_record_is_an_error():
    data = abi.encode(rec())
    with pytest.raises(abi.DecodeError):
        abi.decode(data[:-3])
    with pytest.raises(abi.DecodeError):
        abi.decode(data[:50])


def test_unknown_event_code_is_an_error():
    with pytest.raises(abi.DecodeError):
        abi.decode(abi.encode(rec(op=42)))


@pytest.mark.parametrize("spec,expected", [
    ("create,delete", ("create", "delete")),
    ("default", abi.DEFAULT_EVENTS),
    ("all", abi.EVENT_NAMES),
    ("default,modify", abi.DEFAULT_EVENTS + ("modify",)),
    ("delete, delete", ("delete",)),
])
def test_parse_events(spec, expected):
    assert abi.parse_events(spec) == expected


def test_parse_events_rejects_unknown_names_naming_the_known_ones():
    with pytest.raises(ValueError, match="unknown event 'write'; known: open, exec"):
        abi.parse_events("create,write")


def test_default_leaves_out_reads_and_writes():
    assert "access" not in abi.DEFAULT_EVENTS and "modify" not in abi.DEFAULT_EVENTS
    assert abi.event_mask(["open"]) == 1 and abi.event_mask(["rename"]) == 1 << 9
