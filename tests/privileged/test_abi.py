"""bpftools/abi.py mirrors bpf/fstrace.h: same size, same offsets as BCC compiles them."""
import ctypes

from bpftools import abi
from bpftools.kernel import probe


def test_header_layout_matches_the_compiled_struct():
    p = probe.Probe(probe.ProbeConfig(), lambda data: None)
    try:
        leaf = p.bpf["scratch"].sLeaf     # one CPU's value
    finally:
        p.close()
    assert ctypes.sizeof(leaf) == abi.RECORD_MAX
    offset = 0
    for name, code in abi.HEADER_FIELDS:
        assert getattr(leaf, name).offset == offset, name
        offset += abi.struct.calcsize("=" + code)
    assert leaf.data.offset == abi.HEADER_SIZE


def test_syscall_table_matches_bcc():
    from bcc.syscall import syscall_name
    known = {nr: syscall_name(nr).decode() for nr in abi.SYSCALL_NAMES}
    known = {nr: name for nr, name in known.items() if not name.startswith("[unknown")}
    assert len(known) > 50       # bcc 0.26's table stops before close_range (436)
    assert known == {nr: abi.SYSCALL_NAMES[nr] for nr in known}
