"""Test-suite rules shared by every tier.

With FSTRACE_REQUIRE_BPF=1 (set by .ci/run) a skipped test is a failure:
the root and BPF tests must really run in CI.
"""
import os

import pytest

REQUIRE_BPF = os.environ.get("FSTRACE_REQUIRE_BPF") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_BPF and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = "skipped while FSTRACE_REQUIRE_BPF=1: %s" % (report.longrepr,)
