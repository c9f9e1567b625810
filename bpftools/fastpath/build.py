"""The cffi (API mode) build of bpftools.fastpath._fastpath: fastpath.c with bpf/fstrace.h.

setup.py names this in ``cffi_modules``, so ``pip install`` (and ``make
install``) compiles it; it needs a C compiler and Python's headers
(Debian: gcc, libc6-dev, python3-dev).  By hand:
``python bpftools/fastpath/build.py`` builds it in place.
"""
from __future__ import annotations

import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _cdef() -> str:
    """The declarations of fastpath.h, as cffi reads them (its #defines become integer constants)."""
    text = (HERE / "fastpath.h").read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out = []
    for line in text.splitlines():
        if line.startswith("#define FP_"):
            name = line.split()[1]
            out.append("#define %s ..." % name)
        elif not line.startswith("#"):
            out.append(line)
    return "\n".join(out)


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "bpftools.fastpath._fastpath",
    '#include "fastpath.h"',
    sources=[str((HERE / "fastpath.c").relative_to(ROOT))],
    include_dirs=[str(HERE), str(ROOT / "bpf")],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"],
    libraries=["m"],
)

if __name__ == "__main__":
    import os
    os.chdir(ROOT)
    ffibuilder.compile(tmpdir=str(ROOT), verbose=True)
