"""README, man page and --help describe the CLI as it behaves."""
import re
import subprocess
from pathlib import Path

import click

from bpftools import abi, cli
from bpftools.kernel import backends
from bpftools.views.jsonl import EVENT_FIELDS

ROOT = Path(__file__).resolve().parents[2]
MAN = (ROOT / "man/fstrace.8").read_text()


def man_text() -> str:
    proc = subprocess.run(["man", "-l", "-P", "cat", str(ROOT / "man/fstrace.8")], capture_output=True,
                          text=True, env={"MANWIDTH": "200", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    return proc.stdout


def test_man_page_lists_every_json_event_key_in_order():
    section = MAN.split(".B event\none file event")[1].split(".B cgroup\na cgroup")[0]
    keys = re.findall(r"^\.TP(?: 12)?\n\.B (\w+)\n", section, re.M)
    assert keys == [k for k, _ in EVENT_FIELDS]


def test_man_page_names_every_event():
    section = MAN.split(".SH EVENTS")[1].split(".SH JSON RECORDS")[0]
    for name in abi.EVENT_NAMES:
        assert re.search(r"^\.BR? (%s\n|.*\b%s\b)" % (name, name), section, re.M), name


def test_man_page_documents_every_command_and_option():
    for name, command in cli.cli.commands.items():
        section = MAN.split(".SS fstrace %s\n" % name)[1].split("\n.S")[0]
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden and param.name != "help":
                for opt in param.opts:
                    assert opt.replace("-", "\\-") in section, (name, opt)


def test_every_traced_syscall_is_in_the_man_page():
    for name in abi.SYSCALL_NAMES.values():
        assert re.search(r"^\.(?:B|BR|RB) (?:\( )?%s\b" % name, MAN, re.M), name


def test_man_page_renders_without_warnings():
    text = man_text()
    assert "fstrace trace" in text


def test_readme_quick_start_uses_the_make_targets_that_exist():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for included in re.findall(r"^include (\S+)", makefile, re.M):
        makefile += (ROOT / included).read_text()
    for target in re.findall(r"^    make ([\w-]+)", readme, re.M):
        assert re.search(r"^%s:" % re.escape(target), makefile, re.M), target


def test_man_page_fields_section_is_the_field_table():
    """man fstrace FIELDS lists model/fields.py's table, in order, word for word."""
    from bpftools.model.fields import FIELDS

    section = MAN.split(".SH FIELDS\n")[1].split("\n.SH ")[0]
    items = re.findall(r"^\.TP\n\.BR? (\w+)(?: \"? ?\((\w+)\)\"?)?\n(.*)$", section, re.M)
    assert [(col, name or col) for col, name, _ in items] == [(f.column, f.name) for f in FIELDS]
    assert [what.replace("\\-", "-") for _, _, what in items] == [f.help for f in FIELDS]


def test_no_two_test_modules_share_a_basename():
    """pytest's default import mode imports test modules by basename: `pytest tests` (what
    `make test` runs) refuses to collect two files of one name in different folders."""
    tests = Path(__file__).resolve().parents[1]
    names = [p.name for p in tests.rglob("test_*.py")]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []


def test_man_page_says_what_each_backend_cannot_see():
    """The start record's blind_spots (kernel/backends.py) are the man page's: each phrase is under BACKENDS."""
    section = man_text().split("\nBACKENDS\n", 1)[1].split("\nCGROUPS\n", 1)[0]
    section = re.sub(r"\s+", " ", re.sub(r"\u2010\s+", "", section))      # words hyphenated at line ends joined
    for backend in backends.BACKENDS:
        assert backend.blind_spots
        for phrase in backend.blind_spots:
            words = re.findall(r"\w+", phrase)
            # the man page adds section numbers: close_range(2), mmap(2)
            assert re.search(r"(?:\(\d\)|\W)+".join(words), section), (backend.name, phrase)
