"""`-- CMD`: the command a session runs in a transient cgroup of its own."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys

from bpftools.errors import CommandNotExecutable, CommandNotFound


class TransientCgroup:
    """A cgroup2 child made for `-- CMD`, removed when the run ends."""

    def __init__(self, mount: str):
        name = "fstrace-run-%d-%s" % (os.getpid(), os.urandom(3).hex())
        self.dir = os.path.join(mount, name)
        os.mkdir(self.dir)
        self.path = "/" + name
        self.id = os.stat(self.dir).st_ino

    def enter(self) -> None:
        """Move the calling process (the child, before exec) into the cgroup."""
        with open(os.path.join(self.dir, "cgroup.procs"), "w") as f:
            f.write("0")

    def populated(self) -> bool:
        with open(os.path.join(self.dir, "cgroup.events")) as f:
            return "populated 1" in f.read()

    def remove(self) -> None:
        """rmdir the cgroup and the cgroups the command made below it, deepest first.

        One that still holds a process (a daemon that outlived a Ctrl-C) is
        left in place, with one line on stderr.
        """
        for path, _dirs, _files in os.walk(self.dir, topdown=False):
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise
                sys.stderr.write("fstrace: cgroup %s still holds processes; left in place\n" % path)
                return


def check(command) -> None:
    """Fail before anything starts, as a shell would, when command cannot run: 127 not found, 126 not executable."""
    name = command[0]
    path = name if "/" in name else shutil.which(name)
    if path is None or not os.path.exists(path):
        raise CommandNotFound("%s: command not found" % name)
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise CommandNotExecutable("%s: permission denied" % name)


def spawn(command, cgroup: TransientCgroup) -> subprocess.Popen:
    """Start command inside cgroup (it moves itself there before exec)."""
    try:
        return subprocess.Popen(command, preexec_fn=cgroup.enter)
    except FileNotFoundError:
        raise CommandNotFound("%s: command not found" % command[0]) from None
    except PermissionError:
        raise CommandNotExecutable("%s: permission denied" % command[0]) from None


def exit_status(child: subprocess.Popen | None) -> int:
    """The command's exit status as a shell reports it (128 + N for a signal); 0 without one."""
    if child is None or child.returncode is None:
        return 0
    rc = child.returncode
    return 128 - rc if rc < 0 else rc
