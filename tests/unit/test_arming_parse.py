"""The pure parts of bpftools/kernel/arming.py: mountinfo, masks, which mount a path is on."""
from bpftools import abi
from bpftools.kernel import arming, mountinfo

MOUNTINFO = b"""\
25 1 0:23 / / ro,relatime - 9p /dev/root ro,access=any
24 25 0:22 / /proc rw,nosuid - proc proc rw
32 26 0:26 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw
56 25 0:48 / /tmp rw,relatime - overlay virtme_rw_overlay7 rw,lowerdir=/tmp
64 56 0:58 / /tmp/with\\040space\\012nl rw,relatime - tmpfs none rw
65 53 0:25 /tmp/lock /var/lib/dpkg/lock rw,relatime - tmpfs run rw
66 25 8:1 / /srv rw - ext4 /dev/sda1 rw
67 25 8:2 / /srv rw - xfs /dev/sda2 rw
68 25 0:60 / /ctr rw - overlay overlay rw,lowerdir=/l,upperdir=/srv/u\\054p,workdir=/srv/w\\040k,index=off
"""


def test_parse_mountinfo_unescapes_and_encodes_dev_like_the_kernel():
    mounts = mountinfo.parse(MOUNTINFO)
    tmp = mounts[4]
    assert tmp.point == b"/tmp/with space\nnl"
    assert tmp.dev == 58 and tmp.fstype == "tmpfs" and tmp.root == b"/"
    assert mounts[5].root == b"/tmp/lock"
    assert mounts[6].dev == 8 << 20 | 1


def test_an_overlays_upper_and_work_dirs_are_read_from_its_options():
    mounts = mountinfo.parse(MOUNTINFO)
    assert mounts[8].options.startswith(b"rw,lowerdir=/l,")
    assert mountinfo.overlay_upper_dirs(mounts[8]) == [b"/srv/u,p", b"/srv/w k"]
    assert mountinfo.overlay_upper_dirs(mounts[3]) == []          # read-only overlay: nothing to write
    assert mountinfo.overlay_upper_dirs(mounts[6]) == []


def test_mount_of_takes_the_longest_and_then_the_last_mount():
    mounts = mountinfo.parse(MOUNTINFO)
    assert arming.mount_of(b"/tmp/with space\nnl/x", mounts).dev == 58
    assert arming.mount_of(b"/tmp/with", mounts).point == b"/tmp"
    assert arming.mount_of(b"/srv/a", mounts).fstype == "xfs"          # covers the ext4 below it
    assert arming.mount_of(b"/etc", mounts).point == b"/"


def test_mask_covers_exactly_the_traced_events():
    assert arming.fanotify_mask(["create"]) == 0x100
    assert arming.fanotify_mask(["rename", "exec"]) == 0x40 | 0x80 | 0x1000
    assert arming.fanotify_mask(abi.EVENT_NAMES) == 0x13FF
    # opt-in events stay out of the mask, so the kernel never calls fsnotify() for them (6.9+)
    default = arming.fanotify_mask(abi.DEFAULT_EVENTS)
    assert not default & (arming.FAN_ACCESS | arming.FAN_MODIFY)


def test_pseudo_filesystems_are_not_traced():
    mounts = mountinfo.parse(MOUNTINFO)
    assert [m.fstype for m in mounts if m.fstype not in arming.PSEUDO_FILESYSTEMS] == \
        ["9p", "overlay", "tmpfs", "tmpfs", "ext4", "xfs", "overlay"]
