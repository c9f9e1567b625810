"""The package's layering (pyproject.toml [tool.importlinter], docs/architecture.md) holds."""
import os
import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint), "--config", str(REPO / "pyproject.toml")], cwd=REPO,
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert run.returncode == 0, run.stdout + run.stderr


def _graph():
    return grimp.build_graph("bpftools", include_external_packages=True)


def test_bcc_is_imported_by_the_probe_alone():
    graph = _graph()
    importers = graph.find_modules_that_directly_import("bcc")
    assert importers == {"bpftools.kernel.probe"}


def test_no_import_circles():
    graph = _graph()
    modules = {m for m in graph.modules if m.startswith("bpftools.")}
    circles = []
    for module in sorted(modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if imported in modules and imported != module and \
                    graph.find_shortest_chain(importer=imported, imported=module):
                circles.append("%s <-> %s" % (module, imported))
    assert circles == []
