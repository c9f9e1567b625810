"""Running a session for a command: the one place that owns start, signals, a closed pipe and close.

And writing what a report-like command made: to stdout (tables or JSON) and to the files asked for.

Exit status policy (man/fstrace.8, EXIT STATUS): a reader that goes away
(| head) ends the run quietly with status 0 (or, with -- CMD, CMD's
status); an error after the start record still closes JSON output with
its summary record.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable

from rich.console import Console

from bpftools.errors import FstraceError, UsageError
from bpftools.session import open_session
from bpftools.session.contract import Options, StartInfo
from bpftools.session.runner import STOP_SIGNALS, stop_signals_held


def say(text: str) -> None:
    """One line of news on stderr (a script can wait for it: counting has begun)."""
    sys.stderr.write("fstrace: %s\n" % text)
    sys.stderr.flush()


def quiet_stdout() -> None:
    """The reader went away (| head): end quietly, like any filter."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


class PipeConsole(Console):
    """A rich Console that lets a closed pipe reach run_session (rich would exit 1 on its own)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def run_session(opts: Options, sink, announce: Callable[[StartInfo], None] | None = None
                ) -> tuple[StartInfo | None, int]:
    """Start a session for opts, run it to its end, close it: (what ran, the command's exit status).

    From the moment it is announced, SIGINT and SIGTERM end the run with its
    output; a reader that goes away ends it quietly.
    """
    session = open_session(opts, sink)
    old = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    info, status = None, 0
    try:
        info = session.start()
        for s in STOP_SIGNALS:
            signal.signal(s, session.request_stop)
        if announce:
            announce(info)
        sink.start(info, time.time(), os.getpid())
        sink.flush()
        try:
            status = session.run()
        except FstraceError:        # e.g. CMD not found: the output still ends with its summary
            sink.summary(time.time(), session.totals, info.backend, session.duration)
            sink.flush()
            raise
        session.totals.exit_status = status if opts.command else None
        with stop_signals_held():
            sink.summary(time.time(), session.totals, info.backend, session.duration)
            sink.flush()
    except BrokenPipeError:
        quiet_stdout()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        sink.close()
        session.close()
    return info, status


def batch_width() -> int:
    try:
        return max(80, int(os.environ.get("COLUMNS", "")))
    except ValueError:
        return 120


def write_file(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
    except OSError as e:
        raise UsageError("cannot write %s: %s" % (path, e.strerror)) from None


def write_output(out, as_json: bool, write_json, print_tables, pictures) -> None:
    """A report-like document to out (-o FILE or stdout): JSON, or tables on a console; then its pictures.

    write_json(out) and print_tables(console) write the document; pictures are
    (path or None, text of the picture) pairs, the text made only for a path given.
    """
    try:
        if as_json:
            write_json(out)
        else:
            tty = out.isatty()
            print_tables(PipeConsole(file=out, highlight=False, no_color="NO_COLOR" in os.environ or not tty,
                                     width=None if tty else batch_width()))
        out.flush()
    except BrokenPipeError:
        quiet_stdout()
    if out is not sys.stdout:
        out.close()
    for path, picture in pictures:
        if path:
            write_file(path, picture())


def write_report(rep, out, as_json: bool, csv_dir: str | None, svg_file: str | None, html_file: str | None) -> None:
    """A report to out (-o FILE or stdout: tables or JSON) and to the files asked for."""
    from bpftools.views import report as view

    write_output(out, as_json, lambda f: view.write_json(rep, f), lambda console: view.print_report(rep, console),
                 ((svg_file, lambda: view.to_svg(rep)), (html_file, lambda: view.to_html(rep))))
    if csv_dir:
        try:
            view.write_csv(rep, csv_dir)
        except OSError as e:
            raise UsageError("cannot write CSV files into %s: %s" % (csv_dir, e.strerror)) from None
