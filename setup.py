"""The compiled part of fstrace: everything else is in pyproject.toml.

cffi builds bpftools.fastpath._fastpath (bpftools/fastpath/build.py) at
`pip install` time; it needs a C compiler and Python's headers, which
`make install` installs.
"""
from setuptools import setup

setup(cffi_modules=["bpftools/fastpath/build.py:ffibuilder"])
