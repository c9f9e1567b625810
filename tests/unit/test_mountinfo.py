"""find_cgroup2_mount() on saved /proc/self/mountinfo texts."""
import pytest

from bpftools.cgroups.map import Cgroup2Unavailable, cgroup2_mount, find_cgroup2_mount

# This development VM (Debian 12 userland, Linux 6.18, no systemd): a hybrid
# layout, v1 controllers plus cgroup2 at /sys/fs/cgroup/unified.
HYBRID = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334460k,nr_inodes=3083615,mode=755
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
29 26 0:26 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 23 0:13 / /sys/kernel/tracing rw,relatime - tracefs tracefs rw
43 23 0:8 / /sys/kernel/debug rw,relatime - debugfs debugfs rw
44 43 0:13 / /sys/kernel/tracing rw,relatime - tracefs tracefs rw
"""

# A systemd distribution in unified mode (Debian 12, Fedora, Ubuntu 22.04+).
PURE_V2 = """\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
23 28 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
24 28 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev rw,size=4010564k,nr_inodes=1002641,mode=755
25 24 0:23 / /dev/pts rw,nosuid,noexec,relatime shared:3 - devpts devpts rw,gid=5,mode=620,ptmxmode=000
26 28 0:24 / /run rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs tmpfs rw,size=805484k,mode=755
28 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
29 22 0:6 / /sys/kernel/security rw,nosuid,nodev,noexec,relatime shared:8 - securityfs securityfs rw
31 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
32 22 0:27 / /sys/fs/pstore rw,nosuid,nodev,noexec,relatime shared:10 - pstore pstore rw
33 22 0:28 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:11 - bpf bpf rw,mode=700
"""

# CentOS 7.2, as quoted in netdata #563: v1 controllers only.
V1_ONLY = """\
18 60 0:17 / /sys rw,nosuid,nodev,noexec,relatime shared:6 - sysfs sysfs rw
19 60 0:3 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw
20 60 0:5 / /dev rw,nosuid shared:2 - devtmpfs devtmpfs rw,size=241340k,nr_inodes=60335,mode=755
24 60 0:19 / /run rw,nosuid,nodev shared:21 - tmpfs tmpfs rw,mode=755
25 18 0:20 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
26 25 0:21 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup \
rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
28 25 0:23 / /sys/fs/cgroup/net_cls rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,net_cls
29 25 0:24 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,blkio
30 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpuacct,cpu
31 25 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
60 1 253:0 / / rw,relatime shared:1 - xfs /dev/mapper/centos-root rw,attr2,inode64,noquota
"""

# Inside a docker container (elastic/apm-agent-java #2352): the source field says
# "cgroup", the filesystem type says cgroup2.
CONTAINER = """\
473 387 0:143 / / rw,relatime master:181 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/HOY5TBZRCYUBQ4CYBGZQ6TSNEM
474 473 0:146 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
477 473 0:149 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
486 477 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw
"""

# Talos (siderolabs/talos #4110): cgroup2 mounted twice on the same point; 27 sits on 175.
STACKED = """\
21 1 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
175 21 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:8 - cgroup2 cgroup rw
27 175 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup rw,nsdelegate
"""

# cgroup2 at "/run/my cgroups<TAB>v2\\x": mountinfo escapes space, tab, newline and backslash.
ESCAPED = """\
28 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
26 28 0:24 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,mode=755
50 26 0:40 / /run/my\\040cgroups\\011v2\\134x rw,relatime shared:20 - cgroup2 none rw
"""

# The hybrid tmpfs covered by a second tmpfs: the cgroup2 below it is hidden.
SHADOWED = HYBRID + "45 31 0:39 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"

# A bind mount of a subtree (root field "/sub") seen before the whole hierarchy.
SUBTREE_FIRST = """\
28 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
60 28 0:26 /fstrace /mnt/fstrace rw,relatime shared:30 - cgroup2 cgroup2 rw
61 28 0:26 / /mnt/cg rw,relatime shared:31 - cgroup2 cgroup2 rw
"""


@pytest.mark.parametrize("text, mount", [
    (HYBRID, "/sys/fs/cgroup/unified"),
    (PURE_V2, "/sys/fs/cgroup"),
    (V1_ONLY, None),
    (CONTAINER, "/sys/fs/cgroup"),
    (STACKED, "/sys/fs/cgroup"),
    (ESCAPED, "/run/my cgroups\tv2\\x"),
    (SHADOWED, None),
    (SHADOWED + "46 45 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n", "/sys/fs/cgroup/unified"),
    (SUBTREE_FIRST, "/mnt/cg"),
    (SUBTREE_FIRST.replace("61 28 0:26 / /mnt/cg rw,relatime shared:31 - cgroup2 cgroup2 rw\n", ""), "/mnt/fstrace"),
    ("", None),
    ("not a mountinfo line\n41 31 0:38 / /x\n" + PURE_V2, "/sys/fs/cgroup"),
])
def test_find_cgroup2_mount(text, mount):
    assert find_cgroup2_mount(text) == mount


def test_v1_only_host_gets_one_clear_error(tmp_path):
    saved = tmp_path / "mountinfo"
    saved.write_text(V1_ONLY)
    with pytest.raises(Cgroup2Unavailable) as err:
        cgroup2_mount(str(saved))
    assert str(err.value) == "cgroup attribution needs cgroup2; events still carry cgroup ids"


def test_cgroup2_mount_reads_the_file(tmp_path):
    saved = tmp_path / "mountinfo"
    saved.write_text(HYBRID)
    assert cgroup2_mount(str(saved)) == "/sys/fs/cgroup/unified"
