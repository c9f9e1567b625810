"""tests/kernels/run.py: bookworm-backports from the mirror the machine's apt sources already use."""
import importlib.util
import sys
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("kernels_run", Path(__file__).parents[1] / "kernels" / "run.py")
run = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = run          # dataclasses look their module up
spec.loader.exec_module(run)


@pytest.fixture
def apt(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    return tmp_path


def test_deb822_sources_give_the_mirror_and_keyring(apt):
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n")
    assert run.ensure_backports("bookworm", apt)
    assert (apt / run.BACKPORTS_LIST).read_text() == (
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm-backports\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    assert not run.ensure_backports("bookworm", apt)          # once is enough


def test_one_line_sources_and_an_existing_backports_entry(apt):
    (apt / "sources.list").write_text(
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n"
        "# deb http://commented.example/debian bookworm main\n")
    assert run.apt_sources(apt) == [{"uris": ["http://one.example/debian"], "suites": ["bookworm"],
                                     "signed_by": ["/k.gpg"]}]
    (apt / "sources.list.d" / "bp.list").write_text("deb http://one.example/debian bookworm-backports main\n")
    assert not run.ensure_backports("bookworm", apt)
    assert not (apt / run.BACKPORTS_LIST).exists()


def test_no_source_for_the_release_is_a_clear_stop(apt):
    (apt / "sources.list").write_text("deb http://one.example/debian trixie main\n")
    with pytest.raises(SystemExit, match="no apt source serves bookworm"):
        run.ensure_backports("bookworm", apt)


def test_kernel_packages_are_matched_by_series():
    k61, k612 = run.KERNELS
    assert k61.package.match("linux-image-6.1.0-56-amd64")[1] == "6.1.0-56-amd64"
    assert not k61.package.match("linux-image-6.1.0-56-cloud-amd64")
    assert k612.package.match("linux-image-6.12.117+deb12-amd64")[1] == "6.12.117+deb12-amd64"
    assert not k612.package.match("linux-image-6.12.117+deb12-rt-amd64")


def test_the_guest_command_fits_the_kernel_command_line(monkeypatch):
    """virtme-ng hands the guest its command base64-encoded on the kernel's command line (2048 bytes
    on x86, with ~700 of virtme's own): a longer one leaves the guest idle, with no output at all."""
    import base64

    monkeypatch.setenv("GUEST_HEADERS", "6.1.0-57-amd64")
    out = Path("/work/some-long-clone-name/build/kernels/out/6.12.117+deb12-amd64")
    for kernel in run.KERNELS:
        command = run.guest_command(kernel, out, [], False)
        assert len(base64.b64encode(command.encode())) < 1300, command
    six12 = run.guest_command(run.KERNELS[1], out, ["-x"], False)
    assert "tests/kernels/systemd_guest.py %s -x;" % out in six12
    assert "systemd_guest" not in run.guest_command(run.KERNELS[1], out, [], False, systemd=False)
    assert "systemd_guest" not in run.guest_command(run.KERNELS[0], out, [], False)
