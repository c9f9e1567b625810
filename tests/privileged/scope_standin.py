"""`fstrace` with systemd-run --scope played by a stand-in: this host has no systemd.

usage: scope_standin.py PARENT_CGROUP_DIR FSTRACE-ARGS...

The stand-in does for the shim what systemd-run --scope does, minus D-Bus:
it makes the scope's cgroup (PARENT/<unit>), moves itself into it and
execs, in the same process, what it was given.  Everything else is the real
code path of a systemd host: the stopped shim, the cgroup read from
/proc/PID/cgroup, the kernel filter, the release, the exit status.  The
real systemd-run is exercised in the kernel matrix's systemd guest
(tests/privileged/systemd_checks.py).
"""
import os
import sys

from bpftools.cli import main
from bpftools.session import command

PARENT = sys.argv.pop(1)
STANDIN = 'mkdir "$0" && echo $$ > "$0/cgroup.procs" && exec "$@"'


def standin_argv(unit, cmd):
    return ["/bin/sh", "-c", STANDIN, os.path.join(PARENT, unit), *command.shim_argv(cmd)]


command.transient_for = lambda mount, cmd: command.TransientScope(mount, cmd, argv=standin_argv)
sys.exit(main(sys.argv[1:]))
