"""The replay tests need no privileges: run them as nobody."""
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_replay_runs_as_nobody():
    base = Path(tempfile.mkdtemp(prefix="fstrace-test-replay-"))
    base.chmod(0o777)
    run = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
         sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(base / "t"),
         str(REPO / "tests/unit/test_replay.py")],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert shutil.which("setpriv")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout
    shutil.rmtree(base)
