"""Typed errors: each says what went wrong and what to do, in one line.

The CLI (bpftools/cli.py: main) prints str(error) on stderr and exits with
error.exit_code; a traceback only with FSTRACE_DEBUG=1.
"""
from __future__ import annotations


class FstraceError(Exception):
    exit_code = 1


class UsageError(FstraceError):
    exit_code = 2


class NotPrivileged(FstraceError):
    exit_code = 77


class MissingDependency(FstraceError):
    exit_code = 69


class MissingKernelFeature(FstraceError):
    exit_code = 69

    def __init__(self, feature: str, hint: str):
        super().__init__("%s: %s" % (feature, hint))
        self.feature = feature
        self.hint = hint


class BadInput(FstraceError):
    """A file that is not what the command reads: not a trace, not a report, damaged, too new (EX_DATAERR)."""

    exit_code = 65


class BpfLoadError(FstraceError):
    exit_code = 70


class NoBackend(FstraceError):
    """No backend can run here, each for a missing feature (none failed to load)."""

    exit_code = 69


class CommandNotExecutable(FstraceError):
    exit_code = 126


class CommandNotFound(FstraceError):
    exit_code = 127


class ScopeNotStarted(FstraceError):
    """On a systemd host, systemd-run could not put `-- CMD` in a transient scope."""
