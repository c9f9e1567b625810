"""The one field table: every number a row has, by name.

Each Field is one column of top and report, one sort key, one key of the
JSON and CSV records, one line of top's `?` help, of `--help` and of the man
page's field list (tests/unit/test_docs.py checks the man page against it).
A new number on every row is one new entry here plus the code that fills
it in model.Row.

  name     the sort key and JSON/CSV key
  kind     "class" (operations of an event class), "count" (operations),
           "bytes" (shown as B, KiB, MiB; per second in top) or "time" (in
           microseconds in JSON and CSV; shown as ns, us, ms, s)
  help     what it shows
  heading  the column heading, when it is not the name
"""
from __future__ import annotations

from dataclasses import dataclass

from bpftools.model.rows import CLASSES, Row


@dataclass(frozen=True)
class Field:
    name: str
    kind: str
    help: str
    heading: str = ""

    @property
    def column(self) -> str:
        return self.heading or self.name

    def value(self, row: Row) -> int:
        if self.kind == "class":
            return row.klass(self.name)
        return getattr(row, self.name)


_CLASS_HELP = {
    "open": "successful opens (open)",
    "read": "reads (access)",
    "write": "writes and truncates (modify)",
    "close": "closes (close_write + close_nowrite)",
    "create": "files, directories, links and nodes created (create)",
    "delete": "unlinks and rmdirs (delete)",
    "rename": "renames (rename), counted for the old name",
    "attrib": "chmod, chown, utimes, xattr changes (attrib)",
    "exec": "programs executed (exec)",
    "sync": "fsyncs and fdatasyncs (sync)",
}

FIELDS: tuple[Field, ...] = (
    *(Field(name, "class", _CLASS_HELP[name]) for name, _ in CLASSES),
    Field("total", "count", "all of the above"),
    Field("failed", "count", "operations that failed (with --failed; report: always)", "fail"),
    Field("read_bytes", "bytes", "bytes read: what the read family returned (man fstrace: BYTES)",
          "rbytes"),
    Field("write_bytes", "bytes", "bytes written: what the write family returned (man fstrace: BYTES)",
          "wbytes"),
    Field("time_us", "time", "time spent in its timed operations -- opens, reads, writes, syncs -- from entry to "
          "return of the syscall; top: the share of wall time, like iotop's IO% (man fstrace: LATENCY)", "time"),
    Field("avg_us", "time", "the average time of one of its timed operations (man fstrace: LATENCY)", "avg"),
)
BY_NAME = {f.name: f for f in FIELDS}
BYTE_FIELDS = tuple(f.name for f in FIELDS if f.kind == "bytes")
TIME_FIELDS = tuple(f.name for f in FIELDS if f.kind == "time")
