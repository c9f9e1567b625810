/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel structs as the running kernel lays them out, and the one path
 * builder every backend uses.
 *
 * Nothing here reads a struct through the kernel headers: every offset is a
 * -D flag FST_OFF_<STRUCT>_<MEMBER> that bpftools/kernel/btf.py computes from
 * the running kernel's BTF (/sys/kernel/btf/vmlinux), members inside
 * anonymous structs and unions included, so a program built with headers of
 * another kernel (or none that match) reads the right bytes.
 *
 *   FST_FILE_REF_BIAS   1 when struct file counts references in f_ref
 *                       (file_ref_t, 6.13+: it stores count - 1), else 0
 *   FST_DEPTH_MAX       path components (and mount crossings) walked per name
 *   FST_SB_PREFIXES     a backend that provides fst_sb_prefix(): a path whose
 *                       walk ends at a superblock's root is prefixed with the
 *                       superblock's mount point (fsnotify: events that name a
 *                       dentry carry no mount); without it such a walk ends at
 *                       the root of a mount namespace and is complete
 */
#ifndef FST_KERNEL_H
#define FST_KERNEL_H

#include "fst_common.h"

#ifndef FST_OFF_FILE_F_PATH
#error "struct offsets missing: build with the -D flags of bpftools.kernel.btf.layout_cflags()"
#endif
#ifndef FST_FILE_REF_BIAS
#define FST_FILE_REF_BIAS 0
#endif
#ifndef FST_DEPTH_MAX
#define FST_DEPTH_MAX 64
#endif

#define FST_PATH_LEN    (FST_PATH_MAX - 2) /* bytes of a built path, NUL not counted */
#define FST_MASK        (FST_PATH_MAX - 1)
#define FST_NAME_SLACK  256                /* > NAME_MAX */
#define FST_MNT_NS_INTERNAL ((void *)-22)  /* mnt_ns of kern_mount()s and private mounts: ERR_PTR(-EINVAL) */

/* Documented constants: fmode_t bits and i_mode types are #defines, not in BTF. */
#define FST_FMODE_WRITE    0x2             /* include/linux/fs.h, every kernel */
#define FST_FMODE_CREATED  0x100000        /* include/linux/fs.h since 4.19, unchanged through 6.18 */
#define FST_S_IFMT         0170000
#define FST_S_IFSOCK       0140000
#define FST_S_IFDIR        0040000

/*
 * A pointer member of a kernel object at byte offset off; 0 if base is 0 or
 * the read fails (bpf_probe_read_kernel() zeroes what it cannot read).  No
 * test for base: a branch here would split the verifier's states at every
 * read of the path walk.
 */
static __always_inline void *fst_ptr(const void *base, u32 off)
{
	void *p = 0;
	bpf_probe_read_kernel(&p, sizeof(p), (const char *)base + off);
	return p;
}

static __always_inline u32 fst_u32(const void *base, u32 off)
{
	u32 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (const char *)base + off);
	return v;
}

static __always_inline void *fst_task(void)
{
	return (void *)bpf_get_current_task();
}

/* The struct file at fd in the current task's fd table, 0 if none. */
static __always_inline void *fst_fd_file(s32 fd)
{
	if (fd < 0)
		return 0;
	void *fdt = fst_ptr(fst_ptr(fst_task(), FST_OFF_TASK_STRUCT_FILES), FST_OFF_FILES_STRUCT_FDT);
	if (!fdt || (u32)fd >= fst_u32(fdt, FST_OFF_FDTABLE_MAX_FDS))
		return 0;
	void **fds = fst_ptr(fdt, FST_OFF_FDTABLE_FD);
	void *file = 0;
	if (fds)
		bpf_probe_read_kernel(&file, sizeof(file), fds + fd);
	return file;
}

static __always_inline u32 fst_file_mode(const void *file)
{
	return fst_u32(file, FST_OFF_FILE_F_MODE);
}

/* References to a struct file: fds (in every fd table), mappings, in-flight syscalls. */
static __always_inline s64 fst_file_refs(const void *file)
{
	s64 n = 0;
	bpf_probe_read_kernel(&n, sizeof(n), (const char *)file + FST_OFF_FILE_F_REF);
	return n + FST_FILE_REF_BIAS;
}

static __always_inline u32 fst_file_imode(const void *file)
{
	return fst_u32(fst_ptr(file, FST_OFF_FILE_F_INODE), FST_OFF_INODE_I_MODE) & 0xffff;
}

/* The struct mount a struct vfsmount is embedded in. */
static __always_inline void *fst_real_mount(void *vfsmnt)
{
	return vfsmnt ? (char *)vfsmnt - FST_OFF_MOUNT_MNT : 0;
}

/*
 * Is this open file a file on some path?  Pipes, sockets, eventfds, anon
 * inodes, memfds, pidfds and namespace files live on kernel-internal mounts
 * (mnt_ns == MNT_NS_INTERNAL); a socket bound in the filesystem is opened as
 * a socket, never through its path.
 */
static __always_inline int fst_file_on_path(const void *file)
{
	if (!file)
		return 0;
	void *mnt = fst_real_mount(fst_ptr(file, FST_OFF_FILE_F_PATH + FST_OFF_PATH_MNT));
	if (fst_ptr(mnt, FST_OFF_MOUNT_MNT_NS) == FST_MNT_NS_INTERNAL)
		return 0;
	return (fst_file_imode(file) & FST_S_IFMT) != FST_S_IFSOCK;
}

/*
 * A path is built in two passes, each loop with little branching so the
 * verifier's work stays linear: walk up, noting each component's name; then
 * write them out from the top down.  buf has room for a built path and a
 * name appended to it (FST_PATH_MAX each).
 */
struct fst_comp {
	const unsigned char *name;
	u32 len;
	u32 pad;
};
struct fst_pathbuf {
	char buf[2 * FST_PATH_MAX];
	struct fst_comp comps[FST_DEPTH_MAX];
	u32 forget;
	u32 total;                   /* bytes of the components walked, one '/' each */
	u32 complete;                /* the last fst_build() reached a root */
	u64 src;                     /* fst_build_name(): the name, kept across the walk */
};
BPF_PERCPU_ARRAY(pathbuf, struct fst_pathbuf, 1);

static __always_inline struct fst_pathbuf *fst_pathbuf(void)
{
	int zero = 0;
	return pathbuf.lookup(&zero);
}

/*
 * v, as a number the verifier no longer knows: each way out of a loop leaves
 * a different known count, and every one of them would walk the code after it
 * again.  Through memory they become one unknown value.
 */
static __always_inline u32 fst_forget(struct fst_pathbuf *pb, u32 v)
{
	*(volatile u32 *)&pb->forget = v;
	return *(volatile u32 *)&pb->forget;
}

/* Where the upward walk ended. */
#define FST_WALK_CUT     0    /* too deep: only a tail is known */
#define FST_WALK_ROOT    1    /* at the task's root directory */
#define FST_WALK_SB      2    /* at a superblock's root (a namespace's root mount, or no mount known) */

/*
 * The path of dentry on struct mount mnt (0 if unknown) [+ "/" + last, a
 * struct qstr] into pb->buf, like d_path(): up through the mounts to the
 * acting task's root.  Returns its length with the NUL, and sets
 * pb->complete to whether it is absolute; if not, it is the deepest tail
 * that fits.
 */
static __always_inline u32 fst_build(struct fst_pathbuf *pb, void *dentry, void *mnt, const void *last)
{
	void *fs = fst_ptr(fst_task(), FST_OFF_TASK_STRUCT_FS);
	void *root_mnt = fst_real_mount(fst_ptr(fs, FST_OFF_FS_STRUCT_ROOT + FST_OFF_PATH_MNT));
	void *root_dentry = fst_ptr(fs, FST_OFF_FS_STRUCT_ROOT + FST_OFF_PATH_DENTRY);
	u32 n = 0, total = 0, end = FST_WALK_CUT;

	if (!mnt && root_mnt &&
	    fst_ptr(root_mnt, FST_OFF_MOUNT_MNT + FST_OFF_VFSMOUNT_MNT_SB) == fst_ptr(dentry, FST_OFF_DENTRY_D_SB))
		mnt = root_mnt;
	if (last) {
		pb->comps[0].name = fst_ptr(last, FST_OFF_QSTR_NAME);
		pb->comps[0].len = fst_u32(last, FST_OFF_QSTR_LEN);
		total = pb->comps[0].len + 1;
	}
	*(volatile u32 *)&pb->total = total;
	if (last) {
		n = 1;
	}
	/* pass 1: up to the task's root or a superblock's root, crossing mount points */
	for (int i = 0; i < FST_DEPTH_MAX; i++) {
		if (mnt && mnt == root_mnt && dentry == root_dentry) {
			end = FST_WALK_ROOT;
			break;
		}
		if (mnt && dentry == fst_ptr(mnt, FST_OFF_MOUNT_MNT + FST_OFF_VFSMOUNT_MNT_ROOT)) {
			void *parent = fst_ptr(mnt, FST_OFF_MOUNT_MNT_PARENT);
			if (parent && parent != mnt) {
				dentry = fst_ptr(mnt, FST_OFF_MOUNT_MNT_MOUNTPOINT);
				mnt = parent;
				continue;
			}
			mnt = 0;         /* a namespace's root mount: on to its superblock's root */
		}
		void *parent = fst_ptr(dentry, FST_OFF_DENTRY_D_PARENT);
		if (!parent || parent == dentry) {
			end = FST_WALK_SB;
			break;
		}
		/* n lives in memory: a count in a register would split every state by its value */
		n = fst_forget(pb, n);
		if (n >= FST_DEPTH_MAX)
			break;
		/*
		 * The index read back from memory: after the test above the
		 * compiler drops the mask of n, and uses a copy of n it spilled
		 * before the test; 6.1's verifier gives that copy no bound ("R2
		 * unbounded memory access"; 6.8+ links a spilled copy to its
		 * register).  A value it cannot know keeps its mask.
		 */
		u32 k = fst_forget(pb, n) & (FST_DEPTH_MAX - 1);
		u32 len = fst_u32(dentry, FST_OFF_DENTRY_D_NAME + FST_OFF_QSTR_LEN);
		pb->comps[k].name = fst_ptr(dentry, FST_OFF_DENTRY_D_NAME + FST_OFF_QSTR_NAME);
		pb->comps[k].len = len;
		/* in memory too: a sum in a register would tell the verifier each path's count */
		*(volatile u32 *)&pb->total += len + 1;
		n++;
		dentry = parent;
	}
	n = fst_forget(pb, n) & (2 * FST_DEPTH_MAX - 1);
	total = *(volatile u32 *)&pb->total;
	u32 prefix = 0;
	const char *prefix_text = 0;
	int complete = end == FST_WALK_ROOT;
#ifdef FST_SB_PREFIXES
	if (end == FST_WALK_SB)
		complete = fst_sb_prefix(fst_ptr(dentry, FST_OFF_DENTRY_D_SB), &prefix_text, &prefix);
#else
	if (end == FST_WALK_SB)
		complete = 1;
#endif

	/* too long for one name: keep the deepest components that fit, as a relative tail */
	u32 skip = 0;
	if (complete && prefix + total > FST_PATH_LEN)
		complete = 0;
	if (!complete) {
		prefix = 0;
		total -= 1;      /* no leading '/' */
		for (int j = 0; j < FST_DEPTH_MAX; j++) {
			if (total <= FST_PATH_LEN || skip + 1 >= n)
				break;
			total -= pb->comps[(n - 1 - skip) & (FST_DEPTH_MAX - 1)].len + 1;
			skip++;
		}
	}
	skip = fst_forget(pb, skip) & (2 * FST_DEPTH_MAX - 1);

	/* pass 2: the mount point, then the names from the top down */
	u32 off = prefix;
	if (prefix && prefix_text)
		bpf_probe_read_kernel(pb->buf, prefix & (FST_NAME_SLACK * 4 - 1), prefix_text);
	for (int j = 0; j < FST_DEPTH_MAX; j++) {
		if (skip + j >= n)
			break;
		struct fst_comp *c = &pb->comps[(n - 1 - skip - j) & (FST_DEPTH_MAX - 1)];
		if (complete || j > 0) {
			pb->buf[off & FST_MASK] = '/';
			off++;
		}
		u32 len = c->len & (FST_NAME_SLACK - 1);
		bpf_probe_read_kernel(pb->buf + (off & FST_MASK), len, c->name);
		off += len;
	}
	if (off == 0 && complete)        /* the root directory itself */
		pb->buf[off++] = '/';
	pb->buf[off & FST_MASK] = 0;     /* off <= FST_PATH_LEN: the lengths are the ones summed above */
	pb->complete = complete;
	return (off + 1) & FST_MASK;
}

/* The path of a struct path (mnt, dentry) at kernel address path. */
static __always_inline u32 fst_build_path(struct fst_pathbuf *pb, const void *path)
{
	void *mnt = fst_real_mount(fst_ptr(path, FST_OFF_PATH_MNT));
	return fst_build(pb, fst_ptr(path, FST_OFF_PATH_DENTRY), mnt, 0);
}

/*
 * A name into pb->buf: the path of the struct path at kernel address path,
 * with name (user memory, 0 for none) appended; a name that is absolute is
 * taken as given, and a relative one without a path (0: its directory is not
 * known) as given too.  Returns the length with the NUL, 0 if nothing could
 * be read; pb->complete says whether the result is absolute.
 */
static __always_inline u32 fst_build_name(struct fst_pathbuf *pb, const void *path, const char *name)
{
	char first = 0;
	if (name)
		bpf_probe_read_user(&first, 1, name);
	/* the walk runs always, from one state: a path of 0 reads nothing and ends at once */
	if (first == '/')
		path = 0;
	*(volatile u64 *)&pb->src = (u64)name;
	u32 len = fst_build_path(pb, path);
	name = (const char *)*(volatile u64 *)&pb->src;
	if (!name)
		return path ? len : 0;
	u32 at = 0;
	if (path && len) {
		/* through memory: the compiler knows len - 1 < FST_PATH_MAX and drops
		 * the masks; 6.1's verifier, not knowing len > 0 here, sees (u32)-1 */
		at = fst_forget(pb, len - 1) & FST_MASK;     /* at the NUL */
		if (at != 1 || pb->buf[0] != '/') {  /* "/" + "a" is "/a", not "//a" */
			pb->buf[at & FST_MASK] = '/';
			at++;
		}
	} else {
		pb->complete = first == '/';
	}
	at &= FST_MASK;
	long r = bpf_probe_read_user_str(pb->buf + at, FST_PATH_MAX - 1 - at, name);
	if (r <= 0)
		return 0;
	return (at + r) & FST_MASK;
}

/* Copy len bytes of pb->buf into the record's data at off; the record's names never exceed it. */
static __always_inline void fst_put_name(struct fst_event *e, u32 off, struct fst_pathbuf *pb, u32 len)
{
	bpf_probe_read_kernel(e->data + (off & FST_MASK), len & FST_MASK, pb->buf);
}

#endif /* FST_KERNEL_H */
