"""The compiled stream formatter (bpftools/fastpath) writes exactly what the Python reference writes.

Users' `trace` output is fastpath.c's; views/jsonl.py event_json() and
views/text.py event_line() are the Python reference it is held to, byte for
byte: over every replay fixture (tests/replay/*.rec, recorded from the
kernel; hostile.rec holds newlines, ESC, quotes, controls, C1, bidi, bytes
that are not UTF-8, 255-byte names and paths cut at 4096 bytes, under a
hostile process name) and over made-up records for what a kernel is slow
to produce (every byte value, a name without its NUL, unknown syscalls and
errnos, unwanted and unknown cgroups, forks).
"""
from __future__ import annotations

import json
import math
import random
import struct
from pathlib import Path

import pytest

from bpftools import abi, fastpath
from bpftools.abi import AT_FDCWD, F_DIR, F_NO_BYTES, F_TIMED, NO_DIRFD, REC_CGROUP, REC_FILE, REC_TASK, Record
from bpftools.cgroups.map import CgroupMap
from bpftools.cgroups.runtime_state import StateRoots
from bpftools.cgroups.runtimes import Runtimes
from bpftools.kernel.replay import RECORD, ReplayProbe, frame
from bpftools.kernel.ringbuf import DISCARD_BIT, MemoryRing
from bpftools.session import open_session
from bpftools.session.contract import Options
from bpftools.session.paths import Parents
from bpftools.views import jsonl, text
from bpftools.views.jsonl import JsonSink
from bpftools.views.text import TextSink

REPLAY = Path(__file__).resolve().parents[1] / "replay"
RECORDINGS = sorted(REPLAY.glob("*.rec"))
OFFSET = 1764500000.0078125         # wall clock - monotonic: a value whose sums round on ties
CGROUP, CGROUP_ID = "/fstrace-test-replay", 4242


class ReferenceJson(JsonSink):
    """JSON Lines through the Python reference (views/jsonl.py event_json)."""

    def __init__(self, out):
        super().__init__(out)
        self.formatter = None

    def event(self, ev) -> None:
        self.out.write(jsonl.event_json(ev).encode("utf-8", "surrogateescape"))


class ReferenceText(TextSink):
    """Text through the Python reference (views/text.py event_line)."""

    def __init__(self, out, err, colour):
        super().__init__(out, err, colour)
        self.formatter = None

    def event(self, ev) -> None:
        self._line(text.event_line(ev, self.colour))


def cgroup_ids(recording: bytes) -> set[int]:
    from bpftools.kernel.replay import frames
    return {abi.decode(p).cgroup_id for k, p in frames(recording) if k == RECORD}


def play(recording: bytes, sink, tmp_path, known: dict[int, str], cgroups=()) -> tuple[bytes, int]:
    """recording through a streaming session into sink, as the CLI runs it: (stdout, events)."""
    import io
    cgmap = CgroupMap(sources=("tracepoint",), mount=str(tmp_path))
    for cgid, path in known.items():
        cgmap.feed("mkdir", cgid, path, 0.0)
    session = open_session(Options(events=abi.EVENT_NAMES, failed=True, duration=0, cgroups=cgroups), sink,
                           cgmap=cgmap, runtimes=Runtimes(StateRoots()),
                           load_probe=lambda cfg, on_record: ReplayProbe(recording, cfg, on_record))
    session._offset = OFFSET
    session.parents = Parents(proc=str(tmp_path))       # no /proc: every parent comes from the recording
    info = session.start()
    sink.start(info, 0.0, 1)
    session.run()
    sink.summary(0.0, session.totals, info.backend, 0.0)
    sink.flush()
    session.close()
    assert isinstance(sink.out, io.BytesIO)
    return sink.out.getvalue(), session.totals.events


def both(recording: bytes, kind: str, tmp_path, known, cgroups=()) -> tuple[bytes, bytes, int]:
    import io
    if kind == "json":
        make = (lambda: ReferenceJson(io.BytesIO())), (lambda: JsonSink(io.BytesIO()))
    else:
        colour = kind == "text-colour"
        make = (lambda: ReferenceText(io.BytesIO(), io.StringIO(), colour),
                lambda: TextSink(io.BytesIO(), io.StringIO(), colour))
    ref, ref_events = play(recording, make[0](), tmp_path / "a", known, cgroups)
    got, events = play(recording, make[1](), tmp_path / "b", known, cgroups)
    assert events == ref_events
    return ref, got, events


def first_difference(a: bytes, b: bytes) -> str:
    for i, (x, y) in enumerate(zip(a.splitlines(), b.splitlines())):
        if x != y:
            return "line %d:\n  python %r\n  C      %r" % (i, x, y)
    return "lengths %d and %d" % (len(a), len(b))


@pytest.fixture
def dirs(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    return tmp_path


@pytest.mark.parametrize("kind", ["json", "text", "text-colour"])
@pytest.mark.parametrize("recording", RECORDINGS, ids=[p.name for p in RECORDINGS])
def test_byte_identical_to_the_python_reference_on_the_replay_fixtures(recording, kind, dirs):
    data = recording.read_bytes()
    meta_file = REPLAY / ("hostile.json" if recording.stem == "hostile" else "meta.json")
    meta = json.loads(meta_file.read_text())
    known = {meta["cgroup_id"]: meta["cgroup"]}
    ref, got, events = both(data, kind, dirs, known)
    assert got == ref, first_difference(ref, got)
    if recording.stem != "count":           # a counting recording holds no file events
        assert events > 100
    if recording.stem == "hostile":
        hostile_comm = b'"comm":"ev\\u001b[2J\\\\xff\\nil\\\\x"' if kind == "json" else b"ev\\x1b[2J\\xff\\nil\\\\x["
        assert hostile_comm in got
        assert events >= 400


def rec(op="open", name1=b"/srv/f", name2=None, *, pid=100, cgroup_id=CGROUP_ID, ret=3, syscall=257, flags=0,
        comm=b"app", rtype=REC_FILE, fd=3, ts_ns=5_000_000_123, dirfd=AT_FDCWD, raw_len1=None, lat_ns=0) -> bytes:
    data = abi.encode(Record(ts_ns, cgroup_id, 0, 0, 0, ret, lat_ns, rtype, abi.EVENT_CODES.get(op, op) if rtype == REC_FILE
                             else op, pid, (pid + 1) & 0xffffffff, 0, syscall, flags, 0, fd, dirfd, AT_FDCWD, comm, name1, name2))
    if raw_len1 is not None:                # a name cut at PATH_MAX: its bytes, no NUL
        head = bytearray(data[:abi.HEADER_SIZE])
        struct.pack_into("=H", head, abi.HEADER_SIZE - abi.COMM_LEN - 4, raw_len1)
        data = bytes(head) + name1
    return data


def made_up() -> list[bytes]:
    every_byte = bytes(range(1, 256))
    out = [
        rec("open", b"/srv/" + every_byte),
        rec("create", b"/srv/" + bytes(range(256)), ret=3),           # a NUL inside a name, kept
        rec("rename", b"/a//b/./c/../d/", b"/x/y/../../z", syscall=316, ret=0),
        rec("delete", b"/", syscall=87, ret=0), rec("delete", b"/..", syscall=87, ret=0),
        rec("delete", b"/a/b/..", syscall=87, ret=0), rec("delete", b"relative/../x", syscall=87, dirfd=NO_DIRFD),
        rec("attrib", b"", syscall=90, ret=0), rec("attrib", None, syscall=91, ret=0),
        rec("open", b"/" + b"p" * 4095, raw_len1=4096),                # cut at PATH_MAX, no NUL
        rec("open", b"/" + b"\xe2\x80\xae" * 1365, raw_len1=4096),
        rec("open", b"/" + b"\xff" * 4094),
        rec("open", b"/srv/" + b"n" * 255, comm=b"\x1b]0;t\x07\xff\xfe\n\\\"'%s\x7f\xc2\x85"),  # 16 bytes, no NUL
        rec("access", b"/f", syscall=0, ret=4096), rec("access", b"/f", syscall=0, ret=0),
        rec("modify", b"/f", syscall=1, ret=123456789012), rec("modify", b"/f", syscall=1, ret=1023 * 1024),
        rec("modify", b"/f", syscall=1, ret=2 ** 62), rec("modify", b"/f", syscall=1, ret=99 * 1024 * 1024 + 512),
        rec("modify", b"/f", syscall=1, ret=4096, flags=F_NO_BYTES), rec("modify", b"/f", syscall=77, ret=0),
        rec("modify", b"/f", syscall=1, ret=-28), rec("open", b"/f", ret=-4095), rec("open", b"/f", ret=-(2 ** 63)),
        rec("open", b"/f", ret=-2, syscall=999), rec("open", b"/f", syscall=2 ** 32 - 1),
        rec("create", b"/d", flags=F_DIR, syscall=83, ret=0),
        rec("open", b"/f", cgroup_id=999_999),                          # a cgroup nobody knows: left out
        rec("open", b"/f", cgroup_id=CGROUP_ID + 1),                    # a cgroup the glob leaves out
        rec(abi.TASK_FORK, rtype=REC_TASK, pid=100, fd=200),            # 100 forks 200
        rec("open", b"/child", pid=200),
        rec("open", b"/late", ts_ns=10 ** 18 + 7),
        rec("exec", b"/bin/true", pid=2 ** 32 - 1, syscall=59, ret=0),
    ]
    # timed operations: every unit of human_time(), its rounding edges, and with and without bytes
    out += [rec("access", b"/t", syscall=0, ret=4096, flags=F_TIMED, lat_ns=ns) for ns in (
        1, 999, 1000, 99_949, 99_950, 999_499, 999_500, 12_345, 2_500, 3_500, 99_950_000, 999_500_000,
        9_994_999_999, 9_995_000_000, 99_949_999_999, 99_950_000_000, 2 ** 53, 2 ** 64 - 1)]
    out += [rec("open", b"/t", flags=F_TIMED, lat_ns=7_654_321), rec("open", b"/t", ret=-2, flags=F_TIMED, lat_ns=5),
            rec("modify", b"/t", syscall=1, ret=10, flags=F_TIMED | F_NO_BYTES, lat_ns=1_500),
            rec("sync", b"/t", syscall=74, ret=0, flags=F_TIMED, lat_ns=0), rec("open", b"/t", lat_ns=123)]
    out += [rec(name, b"/e/" + name.encode(), ret=0) for name in abi.EVENT_NAMES]
    rng = random.Random(16)
    for _ in range(300):
        name = bytes(rng.choice((0x2f, 0x2e, 0x5c, 0x22, 0x0a, 0x1b, 0x7f, 0x80, 0xc2, 0xe2, 0xed, 0xf0, 0xf4, 0xff,
                                 0xa0, 0x9f, 0xbf, 0x41, 0xc3, 0xa9)) for _ in range(rng.randrange(1, 40)))
        out.append(rec(rng.choice(abi.EVENT_NAMES), b"/r/" + name, name if rng.random() < 0.3 else None,
                       ret=rng.choice((0, 3, -2, -13, 7)), syscall=rng.choice((0, 1, 2, 257, 82, 999)),
                       flags=rng.choice((0, F_DIR, F_NO_BYTES, F_TIMED)), comm=name[:16], ts_ns=rng.randrange(2 ** 50),
                       lat_ns=rng.randrange(2 ** rng.randrange(1, 45))))
    return out


@pytest.mark.parametrize("kind", ["json", "text", "text-colour"])
def test_byte_identical_on_made_up_records(kind, dirs):
    cgroup_rec = abi.encode(Record(1, CGROUP_ID + 1, 0, 0, 0, 0, 0, REC_CGROUP, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, b"",
                                   b"/other", None))
    recording = b"".join(frame(RECORD, r) for r in [cgroup_rec, *made_up()])
    ref, got, events = both(recording, kind, dirs, {CGROUP_ID: CGROUP, CGROUP_ID + 1: "/other"},
                            cgroups=(CGROUP + "*",))
    assert got == ref, first_difference(ref, got)
    assert events == len(made_up()) - 3     # the fork, and the events of the cgroups the glob leaves out
    assert b"null" in got or kind != "json"


def test_unknown_cgroups_are_written_too(dirs):
    recording = frame(RECORD, rec("open", b"/f", cgroup_id=31337))
    ref, got, events = both(recording, "text", dirs, {})
    assert got == ref and b"unknown:31337" in got and events == 1


def test_json_keys_follow_the_field_table(dirs):
    recording = b"".join(frame(RECORD, r) for r in made_up()[:30])
    _, got, _ = both(recording, "json", dirs, {CGROUP_ID: CGROUP})
    events = [json.loads(line) for line in got.splitlines() if line.startswith(b'{"type":"event"')]
    assert events and all(list(e) == [k for k, _ in jsonl.EVENT_FIELDS] for e in events)


def test_every_key_of_the_field_table_has_a_source():
    keys = [k for k, _ in jsonl.EVENT_FIELDS]
    assert list(jsonl.EVENT_SOURCES) == keys
    in_cgroup = [k for k in keys if jsonl.EVENT_SOURCES[k] in (fastpath.CGROUP, fastpath.IN_CGROUP)]
    assert tuple(in_cgroup) == jsonl.CGROUP_KEYS and jsonl.EVENT_SOURCES["cgroup"] == fastpath.CGROUP


def test_a_numeric_header_field_needs_no_c(dirs):
    """What a new numeric field takes: a key in EVENT_FIELDS and fastpath.number() in EVENT_SOURCES."""
    import io
    fields = [(k, s) for k, s in jsonl.EVENT_SOURCES.items()] + [
        ("file_id", fastpath.number("file_id")), ("fd", fastpath.number("fd")),
        ("dir_ms", fastpath.number("ts_ns", when_flags=F_DIR, divisor=1_000_000)),
        ("ret_k", fastpath.number("ret", divisor=1000, as_float=False))]
    sink = JsonSink(io.BytesIO())
    sink.formatter = fastpath.Formatter.json(fields)
    recording = b"".join(frame(RECORD, r) for r in (rec("open", b"/f", fd=-5, ret=-1001),
                                                     rec("create", b"/d", flags=F_DIR, ret=12345)))
    out, _ = play(recording, sink, dirs / "a", {CGROUP_ID: CGROUP})
    lines = [json.loads(line) for line in out.splitlines() if line.startswith(b'{"type":"event"')]
    assert [(e["fd"], e["dir_ms"], e["ret_k"]) for e in lines] == [(-5, None, -1001 // 1000), (3, 5000.000123, 12)]
    assert list(lines[0])[-4:] == ["file_id", "fd", "dir_ms", "ret_k"]


def test_number_refuses_a_field_the_header_lacks():
    with pytest.raises(ValueError, match="no header field"):
        fastpath.number("latency")


def test_the_compiled_layout_is_the_abi_mirror():
    fastpath.require()
    assert fastpath.lib.fp_header_size() == abi.HEADER_SIZE
    for name, offset in fastpath.HEADER_OFFSETS.items():
        assert fastpath.lib.fp_header_offset(name.encode()) == offset, name


def test_fixed6_is_python_percent_six_f():
    rng = random.Random(6)
    values = [OFFSET, 1.0000005, 2.0000005, 0.5, 0.0, 1e-7, 1e20, 2.0 ** 53, 1764500000.9999995]
    values += [rng.uniform(1, 4e9) for _ in range(20000)]
    values += [1.5e9 + rng.randrange(2 ** 40) / 128 for _ in range(20000)]    # exact ties at the sixth decimal
    for v in values:
        assert fastpath.fixed6(v) == "%.6f" % v, v


def test_float_repr_is_what_json_writes():
    rng = random.Random(7)
    values = [0.0, -0.0, 0.1, 1e16, 1e15, 123.456, 1e-5, 1e-4, 2.5, 1e22, 5e-324, 1.7976931348623157e308,
              math.inf, -math.inf, math.nan]
    values += [rng.randrange(10 ** 12) / 1000 for _ in range(5000)]
    values += [struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] for _ in range(5000)]
    for v in values:
        assert fastpath.float_repr(v) == json.dumps(v), v


def test_the_walk_skips_discarded_records_and_stops_at_a_busy_one():
    import io
    ring = MemoryRing([rec("open", b"/one"), rec("open", b"/two"), rec("open", b"/three")])
    data = bytearray(ring._data)
    second = (8 + len(rec("open", b"/one")) + 7) & ~7
    third = second + ((8 + len(rec("open", b"/two")) + 7) & ~7)
    struct.pack_into("<I", data, second, struct.unpack_from("<I", data, second)[0] | DISCARD_BIT)
    struct.pack_into("<I", data, third, struct.unpack_from("<I", data, third)[0] | 1 << 31)     # not committed
    ring._data = memoryview(bytes(data))
    sink = JsonSink(io.BytesIO())
    fmt = sink.formatter
    fmt.set_cgroup(CGROUP_ID, True, b'"cgroup":"/x"')
    fmt.set_ppid(100, 1)
    fmt.drain(ring, sink.write, None, None, None)
    lines = sink.out.getvalue().splitlines()
    assert [json.loads(line)["path"] for line in lines] == ["/one"]
    assert struct.unpack("<Q", ring._consumer)[0] == third       # the busy record waits for the next poll
    ring.close()


@pytest.mark.parametrize("op", [len(abi.EVENT_NAMES), 2 ** 31 + 5, 2 ** 32 - 1])
def test_a_record_that_does_not_decode_is_pythons_to_refuse(op, dirs):
    """An event code past the table (a corrupt record): the compiled path hands it to Python, which refuses it."""
    bad = bytearray(rec("open", b"/f"))
    struct.pack_into("=I", bad, fastpath.HEADER_OFFSETS["op"], op)
    assert abi.HEADER.unpack_from(bad)[8] == op
    for sink in (ReferenceJson, JsonSink):
        import io
        with pytest.raises(abi.DecodeError, match="unknown event code"):
            play(frame(RECORD, bytes(bad)), sink(io.BytesIO()), dirs / "a", {CGROUP_ID: CGROUP})


def test_random_records_never_crash_the_walk():
    """Records with random fields, lengths that lie and cut-off bodies (fastpath.c is also run like this
    under ASan and UBSan: see docs/benchmarks.md)."""
    import io
    rng = random.Random(9)
    sink = TextSink(io.BytesIO(), io.StringIO(), True)
    handed = []
    for _ in range(200):
        recs = []
        for _ in range(10):
            data = bytearray(rec(rng.choice(abi.EVENT_NAMES), bytes(rng.getrandbits(8) for _ in range(rng.randrange(60))),
                                 comm=bytes(rng.getrandbits(8) for _ in range(16)), ret=rng.getrandbits(63) - 2 ** 62,
                                 syscall=rng.getrandbits(32), flags=rng.getrandbits(32), pid=rng.getrandbits(31),
                                 cgroup_id=rng.randrange(50)))
            if rng.random() < 0.3:
                struct.pack_into("=HH", data, abi.HEADER_SIZE - abi.COMM_LEN - 4, rng.getrandbits(16), rng.getrandbits(16))
            if rng.random() < 0.2:
                data = data[:rng.randrange(len(data) + 1)]
            recs.append(bytes(data))
        ring = MemoryRing(recs)
        sink.formatter.drain(ring, sink.write, lambda cg: (cg % 5 != 0, b"cg"), lambda pid: None, handed.append)
        ring.close()
    assert handed and sink.formatter.events, (len(handed), sink.formatter.events)
