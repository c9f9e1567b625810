"""The fstrace command line: one click group, one module per command.

  options.py   the shared filter options and their parsers
  app.py       run_session(): start, signals, a closed pipe and close, for every command
  trace.py counting.py (top, report) cgroups.py export.py   the commands

Every error a user can cause or meet becomes one line on stderr and a
non-zero exit (bpftools/errors.py); FSTRACE_DEBUG=1 shows the traceback.
"""
from __future__ import annotations

import os
import sys

import click

from bpftools import __version__
from bpftools.cli.cgroups import cgroups_command
from bpftools.cli.counting import report, top
from bpftools.cli.export import export_command
from bpftools.cli.trace import trace
from bpftools.errors import FstraceError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fstrace")
def cli():
    """Which service or container is doing this to my filesystem?

    fstrace traces file activity with eBPF and names every event's cgroup
    (systemd unit, container, pod).  It needs root.
    """


for command in (trace, cgroups_command, top, report, export_command):
    cli.add_command(command)


def main(argv=None) -> None:
    try:
        cli.main(args=argv, prog_name="fstrace", standalone_mode=False)
    except FstraceError as e:
        _fail(str(e), e.exit_code, e)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:
        _fail(e.format_message(), e.exit_code, e)
    except KeyboardInterrupt:
        sys.exit(130)


def _fail(message: str, code: int, exc: BaseException) -> None:
    if os.environ.get("FSTRACE_DEBUG") == "1":
        import traceback
        traceback.print_exception(exc)
    sys.stderr.write("fstrace: error: %s\n" % message)
    sys.exit(code)
