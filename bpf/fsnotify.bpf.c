/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The fsnotify backends: every file event the kernel computes passes through
 * fsnotify(mask, data, data_type, dir, file_name, inode, cookie) (5.9+).  One
 * source for two attach types:
 *
 *   FST_FENTRY          attach as fentry (BPF trampoline); otherwise as kprobe
 *   FST_EVENT_PATH      the values of enum fsnotify_data_type's
 *   FST_EVENT_DENTRY    FSNOTIFY_EVENT_PATH and _DENTRY, from BTF (6.14 added one before them)
 *   FST_MOUNTS_MAX      size of the superblock table
 *   FST_OFF_*           struct offsets from BTF: see fst_kernel.h
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
 * Bytes (FST_BYTES_EXIT): fsnotify() is told that a file was read or
 * written, not how much; the syscall's return value says.  An access or
 * modify event made inside a syscall that moves bytes (FST_MOVES_BYTES)
 * waits in `pending`, one per thread and event type, until raw_syscalls:
 * sys_exit hands it on with ret = that return value.  Events made elsewhere
 * (io_uring, aio, kernel threads such as nfsd) go on at once, flagged
 * FST_F_NO_BYTES, as do all access and modify events without
 * FST_BYTES_EXIT.
 *
 * Latency (FST_LATENCY): raw_syscalls:sys_enter notes when each thread
 * entered a timed syscall (FST_TIMED: the opens, the read and write
 * families, fsync, fdatasync) in `starts`; the open and create events an
 * open makes wait in `pending` too, and every waiting event goes on at
 * sys_exit with the syscall's time (FST_F_TIMED, lat_ns).  fsync and
 * fdatasync make no fsnotify event: their sync event is built at sys_enter
 * from the fd's file and waits likewise.
 *
 * Stacking filesystems (overlayfs) open, read and write their backing files
 * through private mounts; those events repeat the stacked file's and are
 * dropped.  Kernel structs are read at offsets from the running kernel's BTF
 * (fst_kernel.h), so the kernel headers BCC compiles with need not match it;
 * the FS_* event bits are the fanotify/inotify ABI, the same in every kernel.
 */
#include <linux/fsnotify_backend.h>
#include "fst_common.h"
#include "fst_count.h"

#ifndef FST_MOUNTS_MAX
#define FST_MOUNTS_MAX 16384
#endif
#define FST_PREFIX_MAX  1024              /* bytes of a mount point, power of two */

/* One superblock (key: its s_dev) as user space sees it mounted. */
struct fst_mount {
	u32 traced;                  /* events on it are wanted */
	u32 upper;                   /* it holds an overlay's upper layer (see fst_overlay_at_work) */
	u32 len;                     /* bytes of prefix; 0 for the root filesystem */
	char prefix[FST_PREFIX_MAX]; /* mount point of its root, no trailing '/' */
};
BPF_F_TABLE("hash", u32, struct fst_mount, mounts, FST_MOUNTS_MAX, BPF_F_NO_PREALLOC);

#if defined(FST_BYTES_EXIT) || defined(FST_LATENCY)
#define FST_HOLD                     /* events wait in pending for their syscall's sys_exit */
#endif
#ifdef FST_HOLD
#ifndef FST_PENDING_MAX
#define FST_PENDING_MAX 4096
#endif
struct fst_pending_key {
	u32 tid;
	u32 op;                      /* FST_EV_MODIFY for a modify event, else FST_EV_ACCESS (at most one
				      * other event waits per syscall: access, open, create or sync) */
};
/* events waiting for their syscall's return value; memory only while one waits */
BPF_F_TABLE("hash", struct fst_pending_key, struct fst_event, pending, FST_PENDING_MAX, BPF_F_NO_PREALLOC);
#endif

/*
 * For fst_kernel.h: the mount point user space gave for superblock sb, and
 * whether it is known (a walk that ends at a superblock's root is complete
 * only with it).
 */
static __always_inline int fst_sb_prefix(const void *sb, const char **text, u32 *len)
{
	u32 key = 0;
	bpf_probe_read_kernel(&key, sizeof(key), (const char *)sb + FST_OFF_SUPER_BLOCK_S_DEV);
	struct fst_mount *m = mounts.lookup(&key);
	if (!m)
		return 0;
	*text = m->prefix;
	*len = m->len & (FST_PREFIX_MAX - 1);
	return 1;
}
#define FST_SB_PREFIXES
#include "fst_kernel.h"

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

static __always_inline struct fst_mount *fst_sb_mount(const void *dentry)
{
	u32 key = fst_u32(fst_ptr(dentry, FST_OFF_DENTRY_D_SB), FST_OFF_SUPER_BLOCK_S_DEV);
	return mounts.lookup(&key);
}

/* The dentry of a directory inode (directories have exactly one): i_dentry's first d_u.d_alias. */
static __always_inline void *fst_dir_dentry(const void *dir)
{
	void *first = fst_ptr(dir, FST_OFF_INODE_I_DENTRY);
	return first ? (char *)first - FST_OFF_DENTRY_D_ALIAS : 0;
}

/* The syscall the current task is in (x86_64), as the tracepoint backend reports it. */
static __always_inline u32 fst_syscall_nr(void)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	long nr = -1;
	bpf_probe_read_kernel(&nr, sizeof(nr), &regs->orig_ax);
	return nr;
}

/*
 * overlayfs changes its upper layer (creates, renames, deletes, whiteouts) with the credentials of
 * whoever mounted it (ovl_override_creds), inside the syscall that changes the overlay: the
 * overlay's own event follows, once those are dropped.  A file opened through an overlay is told
 * apart by its mount instead (FST_MNT_NS_INTERNAL).
 */
static __always_inline int fst_overlay_at_work(const struct fst_mount *fs)
{
	void *task = fst_task();
	return fs->upper && fst_ptr(task, FST_OFF_TASK_STRUCT_CRED) != fst_ptr(task, FST_OFF_TASK_STRUCT_REAL_CRED);
}

static __always_inline int fst_fsnotify(u32 mask, const void *data, int data_type,
					const void *dir, const void *file_name)
{
	u32 op = fst_mask_op(mask);
	if (!fst_event_wanted(op))
		return 0;
	u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!fst_task_wanted(pid_tgid >> 32))
		return 0;

	/* What to name: a struct path, a dentry, or a directory and a name. */
	void *dentry = 0;
	void *mnt = 0;
	const void *last = 0;
	u32 oflags = 0;
	if (data_type == FST_EVENT_PATH) {
		mnt = fst_real_mount(fst_ptr(data, FST_OFF_PATH_MNT));
		dentry = fst_ptr(data, FST_OFF_PATH_DENTRY);
		if (fst_ptr(mnt, FST_OFF_MOUNT_MNT_NS) == FST_MNT_NS_INTERNAL)
			return 0;        /* a stacking filesystem's backing file */
		if (op == FST_EV_OPEN || op == FST_EV_EXEC) {
			/* FS_OPEN comes from fsnotify_open(file): data is &file->f_path */
			const void *file = (const char *)data - FST_OFF_FILE_F_PATH;
			if (fst_file_mode(file) & FST_FMODE_CREATED)
				return 0;    /* the open that created the file: its create was sent */
			oflags = fst_u32(file, FST_OFF_FILE_F_FLAGS);
		}
	} else if (data_type == FST_EVENT_DENTRY) {
		dentry = (void *)data;
	} else if (dir && file_name) {
		dentry = fst_dir_dentry(dir);
		last = file_name;
	}
	/* else: inode events without a name (link count changes, *_SELF) */
	if (!dentry)
		return 0;
	struct fst_mount *fs = fst_sb_mount(dentry);
	if (!fs || !fs->traced || (data_type != FST_EVENT_PATH && fst_overlay_at_work(fs)))
		return 0;

	struct fst_pathbuf *pb = fst_pathbuf();
	struct fst_event *e = fst_record(FST_REC_FILE, op);
	if (!pb || !e)
		return 0;
	e->flags = (mask & FS_ISDIR) ? FST_F_DIR : 0;
	/* access and modify: no bytes known, until their syscall returns (below); without a branch on op */
	e->flags |= ((FST_BYTES_OPS >> op) & 1) ? FST_F_NO_BYTES : 0;
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
	u32 len = fst_build(pb, dentry, mnt, last);
	if (!pb->complete)
		*dirfd = FST_NO_DIRFD;
	fst_put_name(e, off, pb, len);
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
#ifdef FST_HOLD
	/*
	 * Decided on the record's own fields, not on op: a branch on op would
	 * make the verifier tell apart (and walk) every path per event type.
	 */
	int hold = 0;
#ifdef FST_BYTES_EXIT
	hold = (e->flags & FST_F_NO_BYTES) && FST_MOVES_BYTES(e->syscall);
#endif
#ifdef FST_LATENCY
	/* the open and create events of an open, the access and modify events of reads and writes */
	hold |= (FST_OPENS(e->syscall) && ((FST_OPEN_OPS >> (e->op & 15)) & 1)) ||
		(FST_MOVES_BYTES(e->syscall) && ((FST_BYTES_OPS >> (e->op & 15)) & 1));
#endif
	if (hold) {
		/* a leftover of this thread (its sys_exit came before we attached) is replaced */
		struct fst_pending_key k = {.tid = tid, .op = e->op == FST_EV_MODIFY ? FST_EV_MODIFY : FST_EV_ACCESS};
		u32 had = e->flags;
		e->flags &= ~FST_F_NO_BYTES;
		if (pending.update(&k, e) == 0)
			return 0;
		e->flags = had;
	}
#endif
	fst_file(e);
	return 0;
}

#ifdef FST_HOLD
static __always_inline void fst_pending_done(struct fst_pending_key *k, long nr, long ret, u64 lat)
{
	struct fst_event *e = pending.lookup(k);
	if (!e)
		return;
	if (e->syscall == (u32)nr) {
		e->ret = ret;
		if (lat) {
			e->lat_ns = lat;
			e->flags |= FST_F_TIMED;
		}
	} else {
		e->flags |= FST_F_NO_BYTES;
	}
	fst_file(e);
	pending.delete(k);
}

#ifdef FST_LATENCY
struct fst_start {
	u64 ts;                      /* bpf_ktime_get_ns() at sys_enter */
	u32 nr;
	u32 pad;
};
BPF_HASH(starts, u32, struct fst_start, FST_PENDING_MAX);

/* fsync(fd), fdatasync(fd): the sync event, named now, waits for sys_exit */
static __always_inline void fst_sync_enter(u32 tid, long nr, s32 fd)
{
	const void *file = fst_fd_file(fd);
	if (!fst_file_on_path(file))
		return;
	void *mnt = fst_real_mount(fst_ptr(file, FST_OFF_FILE_F_PATH + FST_OFF_PATH_MNT));
	void *dentry = fst_ptr(file, FST_OFF_FILE_F_PATH + FST_OFF_PATH_DENTRY);
	if (fst_ptr(mnt, FST_OFF_MOUNT_MNT_NS) == FST_MNT_NS_INTERNAL)
		return;
	struct fst_mount *fs = fst_sb_mount(dentry);
	if (!fs || !fs->traced)
		return;
	struct fst_pathbuf *pb = fst_pathbuf();
	struct fst_event *e = fst_record(FST_REC_FILE, FST_EV_SYNC);
	if (!pb || !e)
		return;
	e->syscall = nr;
	e->fd = fd;
	u32 len = fst_build(pb, dentry, mnt, 0);
	if (!pb->complete)
		e->dirfd = FST_NO_DIRFD;
	fst_put_name(e, 0, pb, len);
	e->len1 = len;
	struct fst_pending_key k = {.tid = tid, .op = FST_EV_ACCESS};
	if (pending.update(&k, e) != 0) {
		/* no room to wait: lost, and counted so (not sent from here: with the counting engine
		 * as well as the path walk, this program is more than 6.1's verifier takes) */
		int zero = 0;
		u64 *n = lost.lookup(&zero);
		if (n)
			*n += 1;
	}
}

/* A thread enters a timed syscall: when. */
TRACEPOINT_PROBE(raw_syscalls, sys_enter)
{
	long nr = args->id;
	if (!FST_TIMED(nr))
		return 0;
	u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!fst_task_wanted(pid_tgid >> 32))
		return 0;
	u32 tid = (u32)pid_tgid;
	struct fst_start s = {.ts = bpf_ktime_get_ns(), .nr = nr};
	starts.update(&tid, &s);
	if ((nr == 74 || nr == 75) && fst_event_wanted(FST_EV_SYNC)) {     /* fsync, fdatasync */
		long fd = 0;
		bpf_probe_read_kernel(&fd, sizeof(fd), &args->args[0]);
		fst_sync_enter(tid, nr, fd);
	}
	return 0;
}
#endif

/* The syscall behind waiting events returns: they go on, with its return value (and time). */
TRACEPOINT_PROBE(raw_syscalls, sys_exit)
{
	long nr = args->id;
#ifdef FST_LATENCY
	if (!FST_TIMED(nr))
		return 0;
#else
	if (!FST_MOVES_BYTES(nr))
		return 0;
#endif
	u32 tid = (u32)bpf_get_current_pid_tgid();
	u64 lat = 0;
#ifdef FST_LATENCY
	struct fst_start *s = starts.lookup(&tid);
	if (s) {
		if (s->nr == (u32)nr) {
			lat = bpf_ktime_get_ns() - s->ts;
			lat = lat ? lat : 1;
		}
		starts.delete(&tid);
	}
#endif
	struct fst_pending_key k = {.tid = tid, .op = FST_EV_ACCESS};
	fst_pending_done(&k, nr, args->ret, lat);
	k.op = FST_EV_MODIFY;
	fst_pending_done(&k, nr, args->ret, lat);
	return 0;
}
#endif

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
	return fst_fsnotify(mask, (const void *)data, data_type, (const void *)dir, (const void *)file_name);
}
#else
int kprobe__fsnotify(struct pt_regs *ctx, __u32 mask, const void *data, int data_type,
		     const void *dir, const void *file_name)
{
	return fst_fsnotify(mask, data, data_type, dir, file_name);
}
#endif
