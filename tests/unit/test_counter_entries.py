"""Decoding the kernel's counter map entries (bpf/fstrace.h: struct fst_agg_key, fst_agg_val)."""
from bpftools import abi
from bpftools.abi import Entry
from bpftools.kernel import counters


def test_entries_decode_from_raw_key_and_value_arrays():
    keys = abi.AGG_KEY.pack(8123, 0xabc, 4242, 0) + abi.AGG_KEY.pack(1, abi.KEY_FD | 7, 1, 2)
    values = (abi.AGG_VALUE.pack(*range(10), 4096, 1 << 40, b"nginx\0\0\0garbage\0")
              + abi.AGG_VALUE.pack(*([0] * 9 + [5]), 0, 0, b"init" + b"\0" * 12))
    assert abi.AGG_KEY.size == 24 and abi.AGG_VALUE.size == 112
    assert counters.parse(keys, values) == [
        Entry(8123, 0xabc, 4242, 0, b"nginx", tuple(range(10)), 4096, 1 << 40),
        Entry(1, abi.KEY_FD | 7, 1, 2, b"init", (0,) * 9 + (5,), 0, 0),
    ]


def test_possible_cpus():
    assert counters.possible_cpus("0-1\n") == 2
    assert counters.possible_cpus("0") == 1
    assert counters.possible_cpus("0-3,8-9,12") == 7
