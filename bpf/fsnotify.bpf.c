/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The fsnotify backends: every file event the kernel computes passes through
 * fsnotify(mask, data, data_type, dir, file_name, inode, cookie) (5.9+).  One
 * source for two attach types:
 *
 *   FST_FENTRY          attach as fentry (BPF trampoline); otherwise as kprobe
 *   FST_MNT_PARENT      offsets in struct mount of mnt_parent, mnt_mountpoint,
 *   FST_MNT_MOUNTPOINT  mnt_ns and the embedded struct vfsmount: struct mount
 *   FST_MNT_NS          is private to fs/, so they come from BTF
 *   FST_MNT_VFSMOUNT    (bpftools/btf.py)
 *   FST_DEPTH_MAX       path components (and mount crossings) walked per name
 *   FST_MOUNTS_MAX      size of the superblock table
 *
 * The kernel only calls fsnotify() on a superblock that has some fsnotify
 * mark, and from 6.9 only for event types some mark covers; user space places
 * those marks (bpftools/arming.py) and fills the `mounts` table with every
 * superblock's mount point.  Only superblocks marked `traced` there produce
 * events.
 *
 * Paths are built here, absolute, like d_path(): from the event's struct path
 * up through the mounts to the acting task's root.  Events that name a
 * dentry, or a directory and a name, carry no mount: on the filesystem of the
 * task's root they are walked from the root mount; elsewhere up to their
 * superblock's root and prefixed with the mount point user space gave for
 * that superblock.  A path that cannot be completed (deeper than
 * FST_DEPTH_MAX, longer than FST_PATH_MAX - 2 bytes, on a superblock with no known
 * mount point) is sent as the relative tail that was built, with dirfd -1.
 *
 * Stacking filesystems (overlayfs) open, read and write their backing files
 * through private mounts; those events repeat the stacked file's and are
 * dropped.  Kernel structs are read with the layout of the
 * headers BCC compiles with: probe.py refuses these backends when the headers
 * do not match the running kernel.
 */
#include <linux/fs.h>
#include <linux/dcache.h>
#include <linux/mount.h>
#include <linux/fs_struct.h>
#include <linux/sched.h>
#include <linux/fsnotify_backend.h>

#ifndef FST_DEPTH_MAX
#define FST_DEPTH_MAX 64
#endif
#ifndef FST_MOUNTS_MAX
#define FST_MOUNTS_MAX 16384
#endif
#define FST_PREFIX_MAX  1024              /* bytes of a mount point, power of two */
#define FST_PATH_LEN    (FST_PATH_MAX - 2) /* bytes of a built path, NUL not counted */
#define FST_MASK        (FST_PATH_MAX - 1)
#define FST_NAME_SLACK  256                /* > NAME_MAX */
#define FST_NO_DIRFD    -1                 /* name1/name2 is a relative tail */
#define FST_MNT_NS_INTERNAL ((void *)-22)  /* mnt_ns of private mounts: ERR_PTR(-EINVAL) */

/* One superblock (key: its s_dev) as user space sees it mounted. */
struct fst_mount {
	u32 traced;                  /* events on it are wanted */
	u32 len;                     /* bytes of prefix; 0 for the root filesystem */
	char prefix[FST_PREFIX_MAX]; /* mount point of its root, no trailing '/' */
};
BPF_F_TABLE("hash", u32, struct fst_mount, mounts, FST_MOUNTS_MAX, BPF_F_NO_PREALLOC);

/*
 * A path is built in two passes, each loop with little branching so the
 * verifier's work stays linear: walk up, noting each component's name; then
 * write them out from the top down.  The slack after buf takes one name.
 */
struct fst_comp {
	const unsigned char *name;
	u32 len;
	u32 pad;
};
struct fst_pathbuf {
	char buf[FST_PATH_MAX + FST_NAME_SLACK];
	struct fst_comp comps[FST_DEPTH_MAX];
	u32 forget;
};
BPF_PERCPU_ARRAY(pathbuf, struct fst_pathbuf, 1);

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

/* FS_MOVED_FROM's half of a rename, waiting for FS_MOVED_TO from the same thread. */
struct fst_move {
	u64 inode;                   /* the moved inode: both halves carry it */
	u32 len;
	s32 dirfd;
	char path[FST_PATH_MAX];
};
BPF_F_TABLE("hash", u32, struct fst_move, moves, 1024, BPF_F_NO_PREALLOC);

/* One event per fsnotify() call: the most specific event in the mask. */
static __always_inline u32 fst_mask_op(u32 mask)
{
	if (mask & FS_CREATE)
		return FST_EV_CREATE;
	if (mask & FS_DELETE)
		return FST_EV_DELETE;
	if (mask & (FS_MOVED_FROM | FS_MOVED_TO))
		return FST_EV_RENAME;
	if (mask & FS_OPEN_EXEC)
		return FST_EV_EXEC;
	if (mask & FS_OPEN)
		return FST_EV_OPEN;
	if (mask & FS_CLOSE_WRITE)
		return FST_EV_CLOSE_WRITE;
	if (mask & FS_CLOSE_NOWRITE)
		return FST_EV_CLOSE_NOWRITE;
	if (mask & FS_MODIFY)
		return FST_EV_MODIFY;
	if (mask & FS_ATTRIB)
		return FST_EV_ATTRIB;
	if (mask & FS_ACCESS)
		return FST_EV_ACCESS;
	return FST_EV_COUNT;         /* FS_RENAME (the pair is used), *_SELF, permission events */
}

static __always_inline struct super_block *fst_sb(struct dentry *dentry)
{
	struct super_block *sb = 0;
	bpf_probe_read_kernel(&sb, sizeof(sb), &dentry->d_sb);
	return sb;
}

static __always_inline struct fst_mount *fst_sb_mount(struct dentry *dentry)
{
	dev_t dev = 0;
	bpf_probe_read_kernel(&dev, sizeof(dev), &fst_sb(dentry)->s_dev);
	u32 key = dev;
	return mounts.lookup(&key);
}

/* The acting task's root directory: a struct mount and a dentry. */
struct fst_root {
	void *mnt;
	struct dentry *dentry;
};

static __always_inline void fst_task_root(struct fst_root *root)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fs_struct *fs = 0;
	struct vfsmount *vfsmnt = 0;
	bpf_probe_read_kernel(&fs, sizeof(fs), &task->fs);
	if (!fs)
		return;
	bpf_probe_read_kernel(&vfsmnt, sizeof(vfsmnt), &fs->root.mnt);
	bpf_probe_read_kernel(&root->dentry, sizeof(root->dentry), &fs->root.dentry);
	if (vfsmnt)
		root->mnt = (void *)vfsmnt - FST_MNT_VFSMOUNT;
}

/* Where the upward walk ended. */
#define FST_WALK_CUT     0    /* too deep: only a tail is known */
#define FST_WALK_ROOT    1    /* at the task's root directory */
#define FST_WALK_SB      2    /* at a superblock's root: prefix its mount point */

/*
 * The path of dentry (on struct mount mnt, 0 if unknown) [+ "/" + last] into
 * out; returns its length with the NUL.  *dirfd becomes FST_NO_DIRFD when
 * only a relative tail could be built.
 */
static __always_inline u32 fst_path(struct fst_pathbuf *pb, char *out, struct dentry *dentry,
				    void *mnt, const struct qstr *last, s32 *dirfd)
{
	struct fst_root root = {};
	struct qstr q = {};
	u32 n = 0, total = 0, end = FST_WALK_CUT;

	fst_task_root(&root);
	if (!mnt && root.mnt) {
		struct super_block *root_sb = 0;
		bpf_probe_read_kernel(&root_sb, sizeof(root_sb),
				      root.mnt + FST_MNT_VFSMOUNT + offsetof(struct vfsmount, mnt_sb));
		if (root_sb == fst_sb(dentry))
			mnt = root.mnt;
	}
	if (last) {
		bpf_probe_read_kernel(&q, sizeof(q), last);
		pb->comps[0].name = q.name;
		pb->comps[0].len = q.len;
		total = q.len + 1;
		n = 1;
	}
	/* pass 1: up to the task's root or a superblock's root, crossing mount points */
	for (int i = 0; i < FST_DEPTH_MAX; i++) {
		if (mnt && mnt == root.mnt && dentry == root.dentry) {
			end = FST_WALK_ROOT;
			break;
		}
		if (mnt) {
			struct dentry *mnt_root = 0;
			bpf_probe_read_kernel(&mnt_root, sizeof(mnt_root),
					      mnt + FST_MNT_VFSMOUNT + offsetof(struct vfsmount, mnt_root));
			if (dentry == mnt_root) {
				void *parent = 0;
				bpf_probe_read_kernel(&parent, sizeof(parent), mnt + FST_MNT_PARENT);
				if (parent && parent != mnt) {
					bpf_probe_read_kernel(&dentry, sizeof(dentry), mnt + FST_MNT_MOUNTPOINT);
					mnt = parent;
					continue;
				}
				mnt = 0;     /* a namespace's root mount: on to its superblock's root */
			}
		}
		struct dentry *parent = 0;
		bpf_probe_read_kernel(&parent, sizeof(parent), &dentry->d_parent);
		if (!parent || parent == dentry) {
			end = FST_WALK_SB;
			break;
		}
		/* n lives in memory: a count in a register would split every state by its value */
		n = fst_forget(pb, n);
		if (n >= FST_DEPTH_MAX)
			break;
		bpf_probe_read_kernel(&q, sizeof(q), &dentry->d_name);
		pb->comps[n & (FST_DEPTH_MAX - 1)].name = q.name;
		pb->comps[n & (FST_DEPTH_MAX - 1)].len = q.len;
		total += q.len + 1;
		n++;
		dentry = parent;
	}
	n = fst_forget(pb, n) & (2 * FST_DEPTH_MAX - 1);
	struct fst_mount *m = end == FST_WALK_SB ? fst_sb_mount(dentry) : 0;
	u32 prefix = m ? m->len & (FST_PREFIX_MAX - 1) : 0;
	int complete = end == FST_WALK_ROOT || m;

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
		*dirfd = FST_NO_DIRFD;
	}
	skip = fst_forget(pb, skip) & (2 * FST_DEPTH_MAX - 1);

	/* pass 2: the mount point, then the names from the top down */
	u32 off = prefix;
	if (prefix)
		bpf_probe_read_kernel(pb->buf, prefix, m->prefix);
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
	u32 size = (off + 1) & FST_MASK;
	bpf_probe_read_kernel(out, size, pb->buf);
	return size;
}

/* The dentry of a directory inode (directories have exactly one). */
static __always_inline struct dentry *fst_dir_dentry(struct inode *dir)
{
	struct hlist_node *first = 0;
	bpf_probe_read_kernel(&first, sizeof(first), &dir->i_dentry.first);
	if (!first)
		return 0;
	return (struct dentry *)((void *)first - offsetof(struct dentry, d_u.d_alias));
}

/* The syscall the current task is in (x86_64), as the tracepoint backend reports it. */
static __always_inline u32 fst_syscall_nr(void)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	long nr = -1;
	bpf_probe_read_kernel(&nr, sizeof(nr), &regs->orig_ax);
	return nr;
}

static __always_inline int fst_fsnotify(u32 mask, const void *data, int data_type,
					struct inode *dir, const struct qstr *file_name)
{
	u32 op = fst_mask_op(mask);
	if (!fst_event_wanted(op))
		return 0;
	u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!fst_task_wanted(pid_tgid >> 32))
		return 0;

	/* What to name: a struct path, a dentry, or a directory and a name. */
	struct dentry *dentry = 0;
	void *mnt = 0;
	const struct qstr *last = 0;
	u32 oflags = 0;
	if (data_type == FSNOTIFY_EVENT_PATH) {
		const struct path *path = data;
		struct vfsmount *vfsmnt = 0;
		bpf_probe_read_kernel(&vfsmnt, sizeof(vfsmnt), &path->mnt);
		bpf_probe_read_kernel(&dentry, sizeof(dentry), &path->dentry);
		mnt = (void *)vfsmnt - FST_MNT_VFSMOUNT;
		void *ns = 0;
		bpf_probe_read_kernel(&ns, sizeof(ns), mnt + FST_MNT_NS);
		if (ns == FST_MNT_NS_INTERNAL)
			return 0;        /* a stacking filesystem's backing file */
		if (op == FST_EV_OPEN || op == FST_EV_EXEC) {
			/* FS_OPEN comes from fsnotify_open(file): data is &file->f_path */
			struct file *file = (struct file *)((void *)path - offsetof(struct file, f_path));
			fmode_t fmode = 0;
			bpf_probe_read_kernel(&fmode, sizeof(fmode), &file->f_mode);
			if (fmode & FMODE_CREATED)
				return 0;    /* the open that created the file: its create was sent */
			bpf_probe_read_kernel(&oflags, sizeof(oflags), &file->f_flags);
		}
	} else if (data_type == FSNOTIFY_EVENT_DENTRY) {
		dentry = (struct dentry *)data;
	} else if (dir && file_name) {
		dentry = fst_dir_dentry(dir);
		last = file_name;
	}
	/* else: inode events without a name (link count changes, *_SELF) */
	if (!dentry)
		return 0;
	struct fst_mount *fs = fst_sb_mount(dentry);
	if (!fs || !fs->traced)
		return 0;

	int zero = 0;
	struct fst_pathbuf *pb = pathbuf.lookup(&zero);
	struct fst_event *e = fst_record(FST_REC_FILE, op);
	if (!pb || !e)
		return 0;
	e->flags = (mask & FS_ISDIR) ? FST_F_DIR : 0;
	e->oflags = oflags;
	e->syscall = fst_syscall_nr();

	/* A rename is FS_MOVED_FROM then FS_MOVED_TO, back to back in one thread. */
	u32 tid = (u32)pid_tgid;
	u32 off = 0;
	s32 *dirfd = &e->dirfd;
	if (mask & FS_MOVED_TO) {
		struct fst_move *from = moves.lookup(&tid);
		if (!from)
			return 0;
		if (from->inode != (u64)data) {
			moves.delete(&tid);
			return 0;
		}
		off = from->len & FST_MASK;
		bpf_probe_read_kernel(e->data, off, from->path);
		e->len1 = off;
		e->dirfd = from->dirfd;
		moves.delete(&tid);
		dirfd = &e->dirfd2;
	}
	u32 len = fst_path(pb, e->data + off, dentry, mnt, last, dirfd);
	if (mask & FS_MOVED_FROM) {
		/* pb's contents are overwritten right away; it only sizes the new entry */
		moves.update(&tid, (struct fst_move *)pb);
		struct fst_move *from = moves.lookup(&tid);
		if (from) {
			from->inode = (u64)data;
			from->len = len;
			from->dirfd = e->dirfd;
			bpf_probe_read_kernel(from->path, len, e->data);
		}
		return 0;
	}
	if (off)
		e->len2 = len;
	else
		e->len1 = len;
	fst_file(e);
	return 0;
}

#ifdef FST_FENTRY
/*
 * The verifier will not let a tracing program load a `const void *` argument
 * (data) from its context before Linux 6.15 ("arg1 type UNKNOWN is not a
 * struct"); bpf_get_func_arg() hands over any argument as a number.
 */
KFUNC_PROBE(fsnotify, __u32 mask)
{
	u64 data = 0, data_type = 0, dir = 0, file_name = 0;
	bpf_get_func_arg(ctx, 1, &data);
	bpf_get_func_arg(ctx, 2, &data_type);
	bpf_get_func_arg(ctx, 3, &dir);
	bpf_get_func_arg(ctx, 4, &file_name);
	return fst_fsnotify(mask, (const void *)data, data_type, (struct inode *)dir,
			    (const struct qstr *)file_name);
}
#else
int kprobe__fsnotify(struct pt_regs *ctx, __u32 mask, const void *data, int data_type,
		     struct inode *dir, const struct qstr *file_name)
{
	return fst_fsnotify(mask, data, data_type, dir, file_name);
}
#endif
