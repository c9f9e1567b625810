"""`-- CMD`: the command a session runs in a transient cgroup of its own.

Two ways to give the command its cgroup, picked by ``transient_for()``:

* on a host run by systemd (its own test, sd_booted(3): /run/systemd/system
  is a directory), a transient scope ``fstrace-run-<pid>-<hex>.scope`` that
  systemd makes (``systemd-run --scope``), so the command's cgroup is
  ``/system.slice/fstrace-run-<pid>-<hex>.scope`` and systemd, which owns the
  cgroup tree there, knows it (``systemctl status`` shows it);
* elsewhere, a cgroup ``/fstrace-run-<pid>-<hex>`` that fstrace makes under
  the cgroup2 root and removes at the end.

Either way the command is one process from fork to exit, fstrace's child,
which becomes the command by exec: its pid is the one fstrace started,
stdin, stdout and stderr are fstrace's, a stop signal fstrace gets is passed
on to it, and its exit status is the run's.
"""
from __future__ import annotations

import errno
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time

from bpftools.errors import CommandNotExecutable, CommandNotFound, ScopeNotStarted

SYSTEMD_BOOTED = "/run/systemd/system"
SCOPE_START_TIMEOUT = 60.0      # systemd-run's own D-Bus calls time out after 25 s
SCOPE_SLICE = "system.slice"    # where systemd puts a transient scope of its system manager

# Run by systemd-run inside the scope: wait (stopped) until fstrace has the scope's cgroup in its
# filter, then become the command.  Whatever reads a file is done before the stop (the PATH search
# imports warnings): once continued, the shim's only syscalls are signal dispositions and execve.
# Python ignores SIGPIPE and SIGXFSZ at start-up; the command gets them back at their defaults, as
# subprocess gives them back to a command it starts.
SCOPE_SHIM = (
    "import os,signal,sys,warnings\n"
    "os.get_exec_path()\n"
    "os.kill(os.getpid(),signal.SIGSTOP)\n"
    "for s in (signal.SIGPIPE,signal.SIGXFSZ):\n"
    " signal.signal(s,signal.SIG_DFL)\n"
    "try:\n"
    " os.execvp(sys.argv[1],sys.argv[1:])\n"
    "except OSError as e:\n"
    " sys.stderr.write('fstrace: %s: %s\\n'%(sys.argv[1],e.strerror))\n"
    " os._exit(127 if e.errno==2 else 126)\n"
)


def run_name() -> str:
    """fstrace-run-<pid>-<hex>: the name of a command's cgroup or scope, unique on the host."""
    return "fstrace-run-%d-%s" % (os.getpid(), os.urandom(3).hex())


def systemd_booted(run_dir: str = SYSTEMD_BOOTED) -> bool:
    """Is this host run by systemd?  systemd's own test (sd_booted(3)): /run/systemd/system is a directory."""
    try:
        return stat.S_ISDIR(os.lstat(run_dir).st_mode)
    except OSError:
        return False


def _populated(directory: str) -> bool:
    try:
        with open(os.path.join(directory, "cgroup.events")) as f:
            return "populated 1" in f.read()
    except FileNotFoundError:       # removed: nothing is left in it
        return False


class TransientCgroup:
    """A cgroup2 child made for `-- CMD`, removed when the run ends."""

    kind = "cgroup"

    def __init__(self, mount: str):
        name = run_name()
        self.dir = os.path.join(mount, name)
        os.mkdir(self.dir)
        self.path = "/" + name
        self.id = os.stat(self.dir).st_ino

    def enter(self) -> None:
        """Move the calling process (the child, before exec) into the cgroup."""
        with open(os.path.join(self.dir, "cgroup.procs"), "w") as f:
            f.write("0")

    def spawn(self, command) -> subprocess.Popen:
        """Start command inside the cgroup (it moves itself there before exec)."""
        try:
            return subprocess.Popen(command, preexec_fn=self.enter)
        except FileNotFoundError:
            raise CommandNotFound("%s: command not found" % command[0]) from None
        except PermissionError:
            raise CommandNotExecutable("%s: permission denied" % command[0]) from None

    def populated(self) -> bool:
        return _populated(self.dir)

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


def shim_argv(command, python: str = sys.executable) -> list[str]:
    """The shim: a process that stops itself and, once continued, execs command."""
    return [python, "-I", "-S", "-c", SCOPE_SHIM, *command]


def scope_argv(unit: str, command) -> list[str]:
    """systemd-run --scope running the shim (it keeps its pid: systemd-run execs what it runs)."""
    description = "".join(c if c.isprintable() else "?" for c in "fstrace -- " + shlex.join(command))
    return ["systemd-run", "--scope", "--quiet", "--collect", "--unit=" + unit,
            "--description=" + description[:200], "--", *shim_argv(command)]


def unified_cgroup(proc_cgroup: str) -> str | None:
    """The cgroup2 path in the text of /proc/PID/cgroup (its "0::" line), else None."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


class TransientScope:
    """A transient systemd scope made for `-- CMD` with ``systemd-run --scope``.

    systemd-run asks systemd (D-Bus: StartTransientUnit) for a scope holding
    its own pid, waits until systemd has moved it there and execs what it
    was given, in the same process.  What it is given is a shim that stops
    itself: constructed, the scope exists, its cgroup id is known, and the
    stopped process sits in it; release() lets it exec the command, so the
    command's exec is its first event and the kernel filter already holds
    its cgroup.  systemd removes the scope's cgroup once it is empty
    (--collect: a failed scope too).
    """

    kind = "scope"

    def __init__(self, mount: str, command, argv=scope_argv, timeout: float = SCOPE_START_TIMEOUT):
        self.unit = run_name() + ".scope"
        self.released = False
        try:
            self.child = subprocess.Popen(argv(self.unit, command))
        except FileNotFoundError:
            raise ScopeNotStarted("this host runs systemd (%s exists) but systemd-run is not installed; "
                                  "it puts the command in a transient scope" % SYSTEMD_BOOTED) from None
        try:
            self._wait_stopped(timeout)
            with open("/proc/%d/cgroup" % self.child.pid) as f:
                path = unified_cgroup(f.read())
            if path is None or not path.endswith("/" + self.unit):
                raise ScopeNotStarted("systemd-run put the command in cgroup %s, not in scope %s"
                                      % (path, self.unit))
            self.path = path
            self.dir = os.path.join(mount, path.lstrip("/"))
            self.id = os.stat(self.dir).st_ino
        except BaseException:
            self._kill()
            raise

    def _wait_stopped(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            pid, status = os.waitpid(self.child.pid, os.WNOHANG | os.WUNTRACED)
            if pid and os.WIFSTOPPED(status):
                return
            if pid:                          # systemd-run has said why on stderr
                self.child.returncode = os.waitstatus_to_exitcode(status)
                raise ScopeNotStarted("systemd-run could not start scope %s for the command (exit status %d)"
                                      % (self.unit, self.child.returncode))
            if time.monotonic() > deadline:
                raise ScopeNotStarted("systemd-run had not started scope %s after %.0f s" % (self.unit, timeout))
            time.sleep(0.005)

    def spawn(self, command) -> subprocess.Popen:
        """Let the stopped process exec command (it is in the scope already)."""
        os.kill(self.child.pid, signal.SIGCONT)
        self.released = True
        return self.child

    def populated(self) -> bool:
        return _populated(self.dir)

    def _kill(self) -> None:
        if self.child.returncode is None:
            self.child.kill()
            self.child.wait()

    def remove(self) -> None:
        """A command never released is killed (its scope goes with it); systemd removes an empty scope.

        A scope that still holds processes (a daemon that outlived a Ctrl-C)
        is left running, with one line on stderr.
        """
        if not self.released:
            self._kill()
        elif self.populated():
            sys.stderr.write("fstrace: scope %s still holds processes; left running (systemctl stop %s)\n"
                             % (self.unit, self.unit))


def transient_for(mount: str, command, systemd: bool | None = None) -> TransientCgroup | TransientScope:
    """The command's cgroup: a systemd scope on a systemd host, else a cgroup of fstrace's own."""
    if systemd is None:
        systemd = systemd_booted()
    return TransientScope(mount, command) if systemd else TransientCgroup(mount)


def check(command) -> None:
    """Fail before anything starts, as a shell would, when command cannot run: 127 not found, 126 not executable."""
    name = command[0]
    path = name if "/" in name else shutil.which(name)
    if path is None or not os.path.exists(path):
        raise CommandNotFound("%s: command not found" % name)
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise CommandNotExecutable("%s: permission denied" % name)


def exit_status(child: subprocess.Popen | None) -> int:
    """The command's exit status as a shell reports it (128 + N for a signal); 0 without one."""
    if child is None or child.returncode is None:
        return 0
    rc = child.returncode
    return 128 - rc if rc < 0 else rc
