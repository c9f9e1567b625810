"""Decoding the kernel's counter map entries (bpf/fstrace.h: struct fst_agg_key, fst_agg_val)."""
from bpftools import abi
from bpftools.abi import Entry
from bpftools.kernel import counters


def test_entries_decode_from_raw_key_and_value_arrays():
    keys = abi.AGG_KEY.pack(8123, 0xabc, 4242, 0) + abi.AGG_KEY.pack(1, abi.KEY_FD | 7, 1, 2)
    values = (abi.AGG_VALUE.pack(*range(11), 4096, 1 << 40, *range(100, 105), *range(5), b"nginx\0\0\0garbage\0")
              + abi.AGG_VALUE.pack(*([0] * 10 + [5]), 0, 0, *[0] * 10, b"init" + b"\0" * 12))
    assert abi.AGG_KEY.size == 24 and abi.AGG_VALUE.size == 200
    assert counters.parse(keys, values) == [
        Entry(8123, 0xabc, 4242, 0, b"nginx", tuple(range(11)), 4096, 1 << 40, tuple(range(100, 105)),
              tuple(range(5))),
        Entry(1, abi.KEY_FD | 7, 1, 2, b"init", (0,) * 10 + (5,), 0, 0),
    ]


def test_histograms_decode_from_raw_key_and_value_arrays():
    keys = abi.HIST_KEY.pack(8123, abi.EVENT_CODES["access"], 0)
    values = abi.HIST_VALUE.pack(*range(40), 400_000_000, 300_000_000)
    assert abi.HIST_KEY.size == 16 and abi.HIST_VALUE.size == 42 * 8
    assert counters.parse_hists(keys, values) == [abi.Hist(8123, 2, tuple(range(40)), 400_000_000, 300_000_000)]


def test_the_histogram_bucket_of_a_time_is_its_log2_in_ns():
    assert abi.bucket_of(1) == 0 and abi.bucket_of(3) == 1 and abi.bucket_of(1024) == 10
    assert abi.bucket_of(300_000_000) == 28          # [268 ms, 537 ms)
    assert abi.bucket_of(1 << 50) == abi.HIST_BUCKETS - 1


def test_possible_cpus():
    assert counters.possible_cpus("0-1\n") == 2
    assert counters.possible_cpus("0") == 1
    assert counters.possible_cpus("0-3,8-9,12") == 7
