/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The tracepoint backend: file syscalls seen at the raw_syscalls sys_enter
 * and sys_exit tracepoints, mapped onto fstrace's event names.  Attached as
 * raw tracepoints: two attach points instead of ninety (attaching and
 * detaching take milliseconds), and every other syscall of the machine
 * costs one call and a compare, not a perf record built for it.  The
 * syscall's arguments and number are read from its pt_regs (offsets from
 * BTF).
 *
 * Every name is the kernel's own, built here with fst_kernel.h (struct
 * offsets from the running kernel's BTF):
 *
 *   fd events       the struct file in the task's fd table at sys_enter,
 *                   named at sys_exit if the fd still holds it (a thread
 *                   sharing the table may have closed and reused the fd)
 *   opens           the struct file the returned fd holds; create only if
 *                   the open created the file (FMODE_CREATED)
 *   close           named at sys_enter (close(2) may free the file before
 *                   sys_exit), sent at sys_exit if it succeeded, and only
 *                   when it dropped the file's last reference, as fsnotify's
 *                   close events are; close_write if opened for writing
 *   names           (unlink, rename, chmod, ...) appended to the path of the
 *                   dirfd's file or the task's cwd, if that is still the same
 *                   at sys_exit as at sys_enter; else sent as given
 *   exec            built at sys_enter (the caller's memory is gone after)
 *   copy_file_range, sendfile, splice: access on the source, modify on the
 *                   destination, for the ends that are files
 *   fsync, fdatasync  sync on the fd's file
 *
 * Latency: a syscall of FST_TIMED (opens, the read and write families,
 * fsync, fdatasync) is timed from sys_enter to sys_exit, and its events
 * carry that time (FST_F_TIMED, lat_ns).  With FST_SLOWER_NS (streaming
 * only), other syscalls are not followed, and a timed one that was quicker
 * is dropped at sys_exit before any name is built.
 *
 * Files on kernel-internal mounts (pipes, sockets, eventfds, anon inodes,
 * memfds) are not files on a path and produce no events.
 *
 * x86_64 syscall numbers (fst_syscalls.h); 32-bit (ia32) tasks use other
 * numbers and are not decoded.
 */
#include "fst_common.h"
#include "fst_count.h"
#include "fst_kernel.h"

enum {
#define FST_SYSCALL(nr, name) FST_NR_##name = nr,
#include "fst_syscalls.h"
#undef FST_SYSCALL
};

#define FST_AT_REMOVEDIR   0x200
#define FST_O_CREAT        0100
#define FST_O_TRUNC        01000

/* What a syscall does, decided at sys_enter. */
#define K_PATH     1     /* file event on name1 (relative to dirfd) [and name2] */
#define K_FD       2     /* file event on an open fd */
#define K_OPEN     3     /* open: event on the fd it returns */
#define K_CLOSE    4
#define K_FD2      5     /* access on fd (source), modify on fd2 (destination) */
#define K_EXEC     6

struct fst_args {
	u64 name1;               /* user pointers */
	u64 name2;
	u64 file;                /* K_FD, K_FD2: the struct file at fd at sys_enter */
	u64 file2;               /* K_FD2: the one at fd2 */
	u64 base1;               /* K_PATH, K_OPEN: what name1 is relative to at sys_enter (fst_base()) */
	u64 base2;               /* K_PATH: the same for name2 */
	u64 t0;                  /* FST_TIMED syscalls: bpf_ktime_get_ns() at sys_enter; else 0 */
	s32 fd;
	s32 fd2;
	s32 dirfd;
	s32 dirfd2;
	u32 nr;
	u32 kind;
	u32 op;
	u32 flags;
	u32 oflags;
	u32 pad;
	u32 live;                /* FST_TASK_STORAGE: a followed syscall is in flight (the storage outlives it) */
	u32 spare;
};

/* A name built at sys_enter, sent at sys_exit: close and exec. */
struct fst_early {
	u32 len;
	u32 op;
	u32 flags;
	s32 dirfd;
	char name[FST_PATH_MAX];
};

/*
 * A followed syscall's arguments, from sys_enter to sys_exit, per thread: in
 * task storage (5.11+; no allocation or deletion per syscall), else in a
 * hash by tid.
 */
#ifdef FST_TASK_STORAGE
BPF_TASK_STORAGE(inflight, struct fst_args);

static __always_inline struct fst_args *fst_inflight_new(u32 tid, struct fst_args *a)
{
	struct fst_args *ap = inflight.task_storage_get(bpf_get_current_task_btf(), 0,
							 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!ap)
		return 0;
	a->live = 1;
	*ap = *a;
	return ap;
}

static __always_inline struct fst_args *fst_inflight(u32 tid)
{
	struct fst_args *ap = inflight.task_storage_get(bpf_get_current_task_btf(), 0, 0);
	return ap && ap->live ? ap : 0;
}

static __always_inline void fst_inflight_end(u32 tid, struct fst_args *ap)
{
	ap->live = 0;
}
#else
BPF_HASH(inflight, u32, struct fst_args, 16384);

static __always_inline struct fst_args *fst_inflight_new(u32 tid, struct fst_args *a)
{
	if (inflight.update(&tid, a) < 0)
		return 0;
	return inflight.lookup(&tid);
}

static __always_inline struct fst_args *fst_inflight(u32 tid)
{
	return inflight.lookup(&tid);
}

static __always_inline void fst_inflight_end(u32 tid, struct fst_args *ap)
{
	inflight.delete(&tid);
}
#endif
BPF_F_TABLE("hash", u32, struct fst_early, early, 4096, BPF_F_NO_PREALLOC);
BPF_PERCPU_ARRAY(dropped, u64, 1);                  /* syscalls not followed: no room in inflight or early */

static __always_inline void fst_count_dropped(void)
{
	int zero = 0;
	u64 *n = dropped.lookup(&zero);
	if (n)
		*n += 1;
}

/* Is nr a syscall of fst_syscalls.h?  A range test and a bit test, before anything is read. */
static __always_inline int fst_followed(long nr)
{
	switch (nr) {
#define FST_SYSCALL(nr, name) case nr:
#include "fst_syscalls.h"
#undef FST_SYSCALL
		return 1;
	}
	return 0;
}

#if defined(FST_KNOWN_FILES) && !defined(FST_AGGREGATE)
#error "FST_KNOWN_FILES is a counting option: it needs FST_AGGREGATE"
#endif
#ifdef FST_KNOWN_FILES
/*
 * Counting (FST_KNOWN_FILES): the file key of an open file, remembered from its last named
 * event, so that its reads, writes and closes are counted without building
 * the name again (one lookup and a few reads instead of a path walk).  An
 * entry holds while the file has the path it had: the same dentry, parent,
 * last name and mount, the same root for the task, and no rename or mount
 * anywhere since (fst_moves, bumped at sys_exit of every rename, mount,
 * umount, move_mount, pivot_root and chroot, whoever makes it; read before
 * a name is built, so a name built across a rename is stale at once).
 */
struct fst_known {
	u64 key;
	u64 dentry;
	u64 parent;
	u64 hash_len;
	u64 mnt;
	u64 root;
	u64 moves;
};
BPF_TABLE("lru_hash", u64, struct fst_known, known, 16384);
BPF_ARRAY(fst_moves, u64, 1);

static __always_inline int fst_moving(long nr)
{
	return nr == FST_NR_rename || nr == FST_NR_renameat || nr == FST_NR_renameat2 || nr == 165 /* mount */ ||
	       nr == 166 /* umount2 */ || nr == 155 /* pivot_root */ || nr == 161 /* chroot */ ||
	       nr == 429 /* move_mount */;
}

static __always_inline u64 fst_moves_now(void)
{
	int zero = 0;
	u64 *n = fst_moves.lookup(&zero);
	return n ? *(volatile u64 *)n : 0;
}

/* What a file's name depends on, as it is now. */
static __always_inline void fst_known_state(struct fst_known *k, const void *file)
{
	void *dentry = fst_ptr(file, FST_OFF_FILE_F_PATH + FST_OFF_PATH_DENTRY);
	k->dentry = (u64)dentry;
	k->parent = (u64)fst_ptr(dentry, FST_OFF_DENTRY_D_PARENT);
	k->hash_len = 0;
	bpf_probe_read_kernel(&k->hash_len, sizeof(k->hash_len), (char *)dentry + FST_OFF_DENTRY_D_NAME + FST_OFF_QSTR_HASH);
	k->mnt = (u64)fst_ptr(file, FST_OFF_FILE_F_PATH + FST_OFF_PATH_MNT);
	k->root = (u64)fst_ptr(fst_ptr(fst_task(), FST_OFF_TASK_STRUCT_FS), FST_OFF_FS_STRUCT_ROOT + FST_OFF_PATH_DENTRY);
}

/* The key of file if its name is still the one remembered, else 0. */
static __always_inline u64 fst_known_key(const void *file)
{
	u64 f = (u64)file;
	struct fst_known *k = known.lookup(&f);
	if (!k)
		return 0;
	struct fst_known now = {};
	u64 key = k->key, moves = k->moves;
	fst_known_state(&now, file);
	if (now.dentry != k->dentry || now.parent != k->parent || now.hash_len != k->hash_len ||
	    now.mnt != k->mnt || now.root != k->root || moves != fst_moves_now())
		return 0;
	return key;
}

static __always_inline void fst_known_put(const void *file, u64 key, u64 moves)
{
	struct fst_known k = {.key = key, .moves = moves};
	u64 f = (u64)file;
	fst_known_state(&k, file);
	known.update(&f, &k);
}
#endif

/* Fill a from the syscall number and arguments; 0 if not a syscall we follow. */
static __always_inline int fst_decode(struct fst_args *a, long nr, unsigned long *ar)
{
	a->nr = nr;
	a->dirfd = FST_AT_FDCWD;
	a->dirfd2 = FST_AT_FDCWD;
	a->fd = -1;
	a->fd2 = -1;
	switch (nr) {
	case FST_NR_open:
		a->kind = K_OPEN; a->name1 = ar[0]; a->oflags = ar[1];
		return 1;
	case FST_NR_creat:
		a->kind = K_OPEN; a->name1 = ar[0]; a->oflags = FST_O_CREAT | FST_O_TRUNC | 01;
		return 1;
	case FST_NR_openat:
		a->kind = K_OPEN; a->dirfd = ar[0]; a->name1 = ar[1]; a->oflags = ar[2];
		return 1;
	case FST_NR_openat2: {
		u64 how_flags = 0;
		bpf_probe_read_user(&how_flags, sizeof(how_flags), (void *)ar[2]);
		a->kind = K_OPEN; a->dirfd = ar[0]; a->name1 = ar[1]; a->oflags = how_flags;
		return 1;
	}
	case FST_NR_mkdir:
		a->kind = K_PATH; a->op = FST_EV_CREATE; a->flags = FST_F_DIR; a->name1 = ar[0];
		return 1;
	case FST_NR_mkdirat:
		a->kind = K_PATH; a->op = FST_EV_CREATE; a->flags = FST_F_DIR; a->dirfd = ar[0]; a->name1 = ar[1];
		return 1;
	case FST_NR_mknod:
		a->kind = K_PATH; a->op = FST_EV_CREATE; a->name1 = ar[0];
		return 1;
	case FST_NR_mknodat:
		a->kind = K_PATH; a->op = FST_EV_CREATE; a->dirfd = ar[0]; a->name1 = ar[1];
		return 1;
	case FST_NR_unlink:
		a->kind = K_PATH; a->op = FST_EV_DELETE; a->name1 = ar[0];
		return 1;
	case FST_NR_unlinkat:
		a->kind = K_PATH; a->op = FST_EV_DELETE; a->dirfd = ar[0]; a->name1 = ar[1];
		a->flags = (ar[2] & FST_AT_REMOVEDIR) ? FST_F_DIR : 0;
		return 1;
	case FST_NR_rmdir:
		a->kind = K_PATH; a->op = FST_EV_DELETE; a->flags = FST_F_DIR; a->name1 = ar[0];
		return 1;
	case FST_NR_rename:
		a->kind = K_PATH; a->op = FST_EV_RENAME; a->name1 = ar[0]; a->name2 = ar[1];
		return 1;
	case FST_NR_renameat:
	case FST_NR_renameat2:
		a->kind = K_PATH; a->op = FST_EV_RENAME; a->dirfd = ar[0]; a->name1 = ar[1];
		a->dirfd2 = ar[2]; a->name2 = ar[3];
		return 1;
	case FST_NR_link:
	case FST_NR_symlink:
		a->kind = K_PATH; a->op = FST_EV_CREATE; a->name1 = ar[1];
		return 1;
	case FST_NR_linkat:
		a->kind = K_PATH; a->op = FST_EV_CREATE; a->dirfd = ar[2]; a->name1 = ar[3];
		return 1;
	case FST_NR_symlinkat:
		a->kind = K_PATH; a->op = FST_EV_CREATE; a->dirfd = ar[1]; a->name1 = ar[2];
		return 1;
	case FST_NR_chmod:
	case FST_NR_chown:
	case FST_NR_lchown:
	case FST_NR_utime:
	case FST_NR_utimes:
	case FST_NR_setxattr:
	case FST_NR_lsetxattr:
	case FST_NR_removexattr:
	case FST_NR_lremovexattr:
		a->kind = K_PATH; a->op = FST_EV_ATTRIB; a->name1 = ar[0];
		return 1;
	case FST_NR_utimensat:
		if (!ar[1]) {            /* futimens(fd): utimensat(fd, NULL, ...) acts on the fd itself */
			a->kind = K_FD; a->op = FST_EV_ATTRIB; a->fd = ar[0];
			return 1;
		}
		/* fall through */
	case FST_NR_fchmodat:
	case FST_NR_fchmodat2:
	case FST_NR_fchownat:
	case FST_NR_futimesat:
	case FST_NR_setxattrat:
	case FST_NR_removexattrat:
		a->kind = K_PATH; a->op = FST_EV_ATTRIB; a->dirfd = ar[0]; a->name1 = ar[1];
		return 1;
	case FST_NR_fchmod:
	case FST_NR_fchown:
	case FST_NR_fsetxattr:
	case FST_NR_fremovexattr:
		a->kind = K_FD; a->op = FST_EV_ATTRIB; a->fd = ar[0];
		return 1;
	case FST_NR_truncate:
		a->kind = K_PATH; a->op = FST_EV_MODIFY; a->name1 = ar[0];
		return 1;
	case FST_NR_ftruncate:
		a->kind = K_FD; a->op = FST_EV_MODIFY; a->fd = ar[0];
		return 1;
	case FST_NR_fsync:
	case FST_NR_fdatasync:
		a->kind = K_FD; a->op = FST_EV_SYNC; a->fd = ar[0];
		return 1;
	case FST_NR_write:
	case FST_NR_pwrite64:
	case FST_NR_writev:
	case FST_NR_pwritev:
	case FST_NR_pwritev2:
		a->kind = K_FD; a->op = FST_EV_MODIFY; a->fd = ar[0];
		return 1;
	case FST_NR_read:
	case FST_NR_pread64:
	case FST_NR_readv:
	case FST_NR_preadv:
	case FST_NR_preadv2:
		a->kind = K_FD; a->op = FST_EV_ACCESS; a->fd = ar[0];
		return 1;
	case FST_NR_copy_file_range:
	case FST_NR_splice:
		a->kind = K_FD2; a->fd = ar[0]; a->fd2 = ar[2];
		return 1;
	case FST_NR_sendfile:
		a->kind = K_FD2; a->fd = ar[1]; a->fd2 = ar[0];
		return 1;
	case FST_NR_close:
		a->kind = K_CLOSE; a->fd = ar[0];
		return 1;
	case FST_NR_execve:
		a->kind = K_EXEC; a->op = FST_EV_EXEC; a->name1 = ar[0];
		return 1;
	case FST_NR_execveat:
		a->kind = K_EXEC; a->op = FST_EV_EXEC; a->dirfd = ar[0]; a->name1 = ar[1];
		return 1;
	}
	return 0;
}

/*
 * What a name relative to dirfd is relative to, as an identity that can be
 * compared at sys_exit: the dirfd's struct file, or the cwd's dentry.
 */
static __always_inline u64 fst_base(s32 dirfd)
{
	if (dirfd != FST_AT_FDCWD)
		return (u64)fst_fd_file(dirfd);
	void *fs = fst_ptr(fst_task(), FST_OFF_TASK_STRUCT_FS);
	return (u64)fst_ptr(fs, FST_OFF_FS_STRUCT_PWD + FST_OFF_PATH_DENTRY);
}

/* The struct path of dirfd's base if it is still the one seen at sys_enter, else 0. */
static __always_inline const void *fst_base_path(s32 dirfd, u64 seen)
{
	if (!seen || fst_base(dirfd) != seen)
		return 0;
	if (dirfd != FST_AT_FDCWD)
		return (const char *)seen + FST_OFF_FILE_F_PATH;
	return (const char *)fst_ptr(fst_task(), FST_OFF_TASK_STRUCT_FS) + FST_OFF_FS_STRUCT_PWD;
}

/*
 * What sys_exit sends: up to two names, each the path of a struct path
 * (a file's f_path, a dirfd's or the cwd's), a user-space name, or the
 * second appended to the first.  Two names are one record (rename) or two
 * (copy_file_range's source and destination).  sys_exit fills this job and
 * tail-calls fst_namer(), which builds one name per call and calls itself
 * for the next: the verifier walks the path builder in one small program,
 * once, instead of once for every way into it.
 */
#define FST_JOB_MAX 32           /* names: two for a syscall, up to 32 closes at a process's exit */
struct fst_job {
	u64 path[FST_JOB_MAX];
	u64 name[FST_JOB_MAX];
	s64 ret;
	s32 dirfd[FST_JOB_MAX];  /* reported when the name is not complete */
	s32 fd[FST_JOB_MAX];
	u32 op[FST_JOB_MAX];
	u32 flags[FST_JOB_MAX];
	u32 nr;
	u32 oflags;
	u32 n;                   /* names */
	u32 next;                /* the next name fst_namer() builds */
	u32 one_record;          /* both names in one record (name1, name2) */
	u32 off;                 /* where the next name goes in the record */
	u32 early;               /* a thread at sys_enter of close or exec: the name goes to early[tid] */
	u64 lat;                 /* the syscall's time in ns if it was timed (FST_TIMED), else 0 */
	u32 fresh;               /* fst_namer(): the name starts a record */
#ifdef FST_KNOWN_FILES
	u64 moves;               /* fst_moves before the names were built */
#endif
};
BPF_PERCPU_ARRAY(jobs, struct fst_job, 1);
BPF_PROG_ARRAY(fst_progs, 1);   /* [0] = fst_namer, set by bpftools/kernel/probe.py */

static __always_inline struct fst_job *fst_job(struct fst_args *a, long ret, u64 lat)
{
	int zero = 0;
	struct fst_job *j = jobs.lookup(&zero);
	if (j) {
		j->lat = lat;
		j->n = 0;
		j->next = 0;
		j->one_record = 0;
		j->off = 0;
		j->early = 0;
		j->ret = ret;
		j->nr = a->nr;
		j->oflags = a->oflags;
#ifdef FST_KNOWN_FILES
		j->moves = fst_moves_now();
#endif
	}
	return j;
}

/* Add a name: the open file's. */
static __always_inline void fst_job_file(struct fst_job *j, u32 op, const void *file, s32 fd, u32 flags)
{
	u32 i = j->n & (FST_JOB_MAX - 1);
	j->path[i] = (u64)file + FST_OFF_FILE_F_PATH;
	j->name[i] = 0;
	j->dirfd[i] = FST_NO_DIRFD;
	j->fd[i] = fd;
	j->op[i] = op;
	j->flags[i] = flags;         /* fst_namer() adds FST_F_DIR from the inode */
	j->n = i + 1;
}

/* Add a name: name relative to dirfd's base, if that is still the one seen at sys_enter. */
static __always_inline void fst_job_name(struct fst_job *j, u32 op, s32 dirfd, u64 seen, u64 name,
					 s32 fd, u32 flags)
{
	u32 i = j->n & (FST_JOB_MAX - 1);
	j->path[i] = (u64)fst_base_path(dirfd, seen);
	j->name[i] = name;
	j->dirfd[i] = dirfd;
	j->fd[i] = fd;
	j->op[i] = op;
	j->flags[i] = flags;
	j->n = i + 1;
}

/*
 * One name of the job into the record under construction (sent when
 * complete), or for a thread at sys_enter of close or exec into early[tid].
 * One call of the path builder, whatever the name is for.
 */
int fst_namer(void *ctx)
{
	int zero = 0;
	struct fst_job *j = jobs.lookup(&zero);
	struct fst_pathbuf *pb = fst_pathbuf();
	struct fst_event *e = scratch.lookup(&zero);
	if (!j || !pb || !e)
		return 0;
	u32 i = j->next;
	if (i >= j->n || i >= FST_JOB_MAX)
		return 0;
	j->next = i + 1;
	u32 op = j->op[i] < FST_EV_COUNT ? j->op[i] : 0;
	int fresh = !j->early && (i == 0 || !j->one_record);
	if (fresh && (!fst_event_wanted(op) || !fst_outcome_wanted(j->ret))) {
		if (j->one_record)
			return 0;
		goto next;
	}

	/* nothing the walk does not need lives across it: each known value would be one more walk to verify */
	j->fresh = fresh;
	u32 len = fst_build_name(pb, (const void *)j->path[i], (const char *)j->name[i]);
	i = *(volatile u32 *)&j->next - 1;
	if (i >= FST_JOB_MAX)
		return 0;
	fresh = *(volatile u32 *)&j->fresh;
	op = j->op[i] < FST_EV_COUNT ? j->op[i] : 0;
	s32 dirfd = pb->complete ? FST_AT_FDCWD : j->dirfd[i];

	if (j->early) {
		u32 tid = j->early;
		early.update(&tid, (struct fst_early *)pb->buf);     /* pb only sizes the new entry */
		struct fst_early *x = early.lookup(&tid);
		if (!x) {
			fst_count_dropped();     /* no room or no memory: a close or exec lost, and said so */
			return 0;
		}
		x->op = op;
		x->len = len;
		x->dirfd = dirfd;
		x->flags = j->flags[0];
		bpf_probe_read_kernel(x->name, len & FST_MASK, pb->buf);
		return 0;
	}
	if (fresh) {
		e = fst_record(FST_REC_FILE, op);
		if (!e)
			return 0;
		e->ret = j->ret;
		e->syscall = j->nr;
		e->flags = j->flags[i];
		if (!j->name[i] && (fst_file_imode((const char *)j->path[i] - FST_OFF_FILE_F_PATH) & FST_S_IFMT) ==
		    FST_S_IFDIR)
			e->flags |= FST_F_DIR;      /* a name from an open file: its inode says */
		e->oflags = j->oflags;
		e->fd = j->fd[i];
		e->lat_ns = j->lat;
		if (j->lat)
			e->flags |= FST_F_TIMED;
		j->off = 0;
	}
	/* else: the record name1 went into */
	u32 off = j->off & FST_MASK;
	fst_put_name(e, off, pb, len);
	if (off) {
		e->dirfd2 = dirfd;
		e->len2 = len;
	} else {
		e->dirfd = dirfd;
		e->len1 = len;
	}
	j->off = len;
	if (!j->one_record || i == 1) {
		u64 key = fst_file(e);
#ifdef FST_KNOWN_FILES
		/* an open file's absolute name: remembered for its next events (not at exit: it closes now) */
		if (key && dirfd == FST_AT_FDCWD && !j->name[i & (FST_JOB_MAX - 1)] && j->path[i & (FST_JOB_MAX - 1)] &&
		    j->nr != FST_NR_exit_group)
			fst_known_put((const char *)j->path[i & (FST_JOB_MAX - 1)] - FST_OFF_FILE_F_PATH, key, j->moves);
#else
		(void)key;
#endif
	}
next:
	if (j->next < j->n)
		fst_progs.call(ctx, 0);
	return 0;
}

static __always_inline void fst_open_exit(struct fst_job *j, struct fst_args *a, long ret)
{
	if (ret < 0) {               /* nothing was opened: the name as given, create if it was asked for */
		fst_job_name(j, (a->oflags & FST_O_CREAT) ? FST_EV_CREATE : FST_EV_OPEN, a->dirfd, a->base1,
			     a->name1, -1, 0);
		return;
	}
	void *file = fst_fd_file(ret);
	if (!fst_file_on_path(file))
		return;
	u32 op = (fst_file_mode(file) & FST_FMODE_CREATED) ? FST_EV_CREATE : FST_EV_OPEN;
	fst_job_file(j, op, file, ret, 0);
}

/*
 * close and exec: the name is built at sys_enter (close(2) may free the file
 * before sys_exit; execve's name is gone with the old program) and kept per
 * thread until sys_exit.
 */
static __always_inline int fst_early_enter(struct fst_args *a, u32 tid)
{
	u32 op = FST_EV_EXEC, flags = 0;
	const void *path;
	const char *name = 0;
	s32 dirfd = a->dirfd;
	if (a->kind == K_CLOSE) {
		void *file = fst_fd_file(a->fd);
		if (!fst_file_on_path(file) || fst_file_refs(file) != 1)
			return 0;        /* another fd, process or mapping keeps the file open: no close yet */
		op = (fst_file_mode(file) & FST_FMODE_WRITE) ? FST_EV_CLOSE_WRITE : FST_EV_CLOSE_NOWRITE;
		flags = (fst_file_imode(file) & FST_S_IFMT) == FST_S_IFDIR ? FST_F_DIR : 0;
		path = (const char *)file + FST_OFF_FILE_F_PATH;
		dirfd = FST_NO_DIRFD;
	} else {
		path = fst_base_path(a->dirfd, fst_base(a->dirfd));
		name = (const char *)a->name1;
	}
	if (!fst_event_wanted(op))
		return 0;
#ifdef FST_KNOWN_FILES
	if (a->kind == K_CLOSE) {
		u64 f = (u64)path - FST_OFF_FILE_F_PATH;
		u64 key = fst_known_key((const void *)f);
		known.delete(&f);
		if (key && agg_named.lookup(&key)) {     /* counted at sys_exit by key, no name built */
			a->base1 = key;
			a->op = op;
			a->pad = 1;
			return 2;
		}
	}
#endif
	int zero = 0;
	struct fst_job *j = jobs.lookup(&zero);
	if (!j)
		return 0;
	j->path[0] = (u64)path;
	j->name[0] = (u64)name;
	j->dirfd[0] = dirfd;
	j->op[0] = op;
	j->flags[0] = flags;
	j->n = 1;
	j->next = 0;
	j->early = tid;          /* fst_namer() builds the name into early[tid] */
	return 1;
}

static __always_inline void fst_early_exit(struct fst_args *a, u32 tid, long ret)
{
	struct fst_early *x = early.lookup(&tid);
	if (!x)
		return;
	u32 op = x->op < FST_EV_COUNT ? x->op : 0;
	if ((a->kind == K_EXEC || ret == 0) && fst_event_wanted(op) && fst_outcome_wanted(ret)) {
		struct fst_event *e = fst_record(FST_REC_FILE, op);
		if (e) {
			e->ret = ret;
			e->syscall = a->nr;
			e->fd = a->fd;
			e->flags = x->flags;
			e->dirfd = x->dirfd;
			u32 len = x->len & FST_MASK;
			bpf_probe_read_kernel(e->data, len, x->name);
			e->len1 = len;
			fst_file(e);
		}
	}
	early.delete(&tid);
}

/* x86_64's six syscall argument registers, read in one copy of the part of pt_regs they lie in */
#define FST_MIN(a, b) ((a) < (b) ? (a) : (b))
#define FST_MAX(a, b) ((a) > (b) ? (a) : (b))
#define FST_REGS_LO FST_MIN(FST_MIN(FST_MIN(FST_OFF_PT_REGS_DI, FST_OFF_PT_REGS_SI), \
				    FST_MIN(FST_OFF_PT_REGS_DX, FST_OFF_PT_REGS_R10)), \
			    FST_MIN(FST_OFF_PT_REGS_R8, FST_OFF_PT_REGS_R9))
#define FST_REGS_HI FST_MAX(FST_MAX(FST_MAX(FST_OFF_PT_REGS_DI, FST_OFF_PT_REGS_SI), \
				    FST_MAX(FST_OFF_PT_REGS_DX, FST_OFF_PT_REGS_R10)), \
			    FST_MAX(FST_OFF_PT_REGS_R8, FST_OFF_PT_REGS_R9))
#define FST_REGS_WORDS ((FST_REGS_HI - FST_REGS_LO) / 8 + 1)
_Static_assert(FST_REGS_WORDS <= 16, "the argument registers lie within 128 bytes of pt_regs");

static __always_inline void fst_syscall_args(unsigned long ar[6], const void *regs)
{
	u64 w[FST_REGS_WORDS];
	bpf_probe_read_kernel(w, sizeof(w), regs + FST_REGS_LO);
	ar[0] = w[(FST_OFF_PT_REGS_DI - FST_REGS_LO) / 8];
	ar[1] = w[(FST_OFF_PT_REGS_SI - FST_REGS_LO) / 8];
	ar[2] = w[(FST_OFF_PT_REGS_DX - FST_REGS_LO) / 8];
	ar[3] = w[(FST_OFF_PT_REGS_R10 - FST_REGS_LO) / 8];
	ar[4] = w[(FST_OFF_PT_REGS_R8 - FST_REGS_LO) / 8];
	ar[5] = w[(FST_OFF_PT_REGS_R9 - FST_REGS_LO) / 8];
}

RAW_TRACEPOINT_PROBE(sys_enter)              /* (struct pt_regs *regs, long id) */
{
	struct fst_args a = {};
	unsigned long ar[6];
	long nr = ctx->args[1];

	if (!fst_followed(nr))
		return 0;
#if defined(FST_SLOWER_NS) && !defined(FST_AGGREGATE)
	if (!FST_TIMED(nr))
		return 0;            /* only timed operations can be slow enough */
#endif
	/* cheap exit for the hot syscalls nobody asked for */
	if (nr == FST_NR_read || nr == FST_NR_pread64 || nr == FST_NR_readv ||
	    nr == FST_NR_preadv || nr == FST_NR_preadv2) {
		if (!fst_event_wanted(FST_EV_ACCESS))
			return 0;
	} else if (nr == FST_NR_write || nr == FST_NR_pwrite64 || nr == FST_NR_writev ||
		   nr == FST_NR_pwritev || nr == FST_NR_pwritev2) {
		if (!fst_event_wanted(FST_EV_MODIFY))
			return 0;
	}
	fst_syscall_args(ar, (const void *)ctx->args[0]);
	if (!fst_decode(&a, nr, ar))
		return 0;
	u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!fst_task_wanted(pid_tgid >> 32))
		return 0;
	u32 tid = (u32)pid_tgid;
	/*
	 * On from the stored copy: its fields are unknown to the verifier, so
	 * what follows is walked once, not once per syscall fst_decode() knows.
	 */
	struct fst_args *ap = fst_inflight_new(tid, &a);
	if (!ap) {
		fst_count_dropped();
		return 0;
	}
	int keep = 1;
	switch (ap->kind) {
	case K_FD:
		ap->file = (u64)fst_fd_file(ap->fd);
		keep = fst_file_on_path((void *)ap->file);    /* not pipes, sockets, ...; bad fds */
		break;
	case K_FD2:
		ap->file = (u64)fst_fd_file(ap->fd);
		ap->file2 = (u64)fst_fd_file(ap->fd2);
		if (!fst_file_on_path((void *)ap->file))
			ap->file = 0;
		if (!fst_file_on_path((void *)ap->file2))
			ap->file2 = 0;
		keep = ap->file || ap->file2;
		break;
	case K_CLOSE:
	case K_EXEC:
		keep = fst_early_enter(ap, tid);
		if (keep == 1) {
			early.delete(&tid);      /* a leftover of a syscall that never returned (exit) */
			fst_progs.call(ctx, 0);
			fst_count_dropped();     /* here only if the tail call failed */
			keep = 0;
		}
		break;
	default:                     /* K_PATH, K_OPEN */
		ap->base1 = fst_base(ap->dirfd);
		if (ap->name2)
			ap->base2 = fst_base(ap->dirfd2);
	}
	if (!keep)
		fst_inflight_end(tid, ap);
	else if (FST_TIMED(nr))
		ap->t0 = bpf_ktime_get_ns();     /* last, so the time is the syscall's, not ours */
	return 0;
}

RAW_TRACEPOINT_PROBE(sys_exit)               /* (struct pt_regs *regs, long ret) */
{
	long nr = 0;
	bpf_probe_read_kernel(&nr, sizeof(nr), (const void *)ctx->args[0] + FST_OFF_PT_REGS_ORIG_AX);
#ifdef FST_KNOWN_FILES
	if (fst_moving(nr)) {                        /* whoever makes it */
		int zero = 0;
		u64 *n = fst_moves.lookup(&zero);
		if (n)
			__sync_fetch_and_add(n, 1);
		if (nr != FST_NR_rename && nr != FST_NR_renameat && nr != FST_NR_renameat2)
			return 0;
	}
#endif
	if (!fst_followed(nr))
		return 0;
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct fst_args *ap = fst_inflight(tid);
	if (!ap)
		return 0;
	struct fst_args a = *ap;
	fst_inflight_end(tid, ap);
	long ret = ctx->args[1];
	if (a.nr != nr) {                            /* a leftover of a syscall that never returned */
		if (a.kind == K_CLOSE || a.kind == K_EXEC)
			early.delete(&tid);
		return 0;
	}
	u64 lat = 0;
	if (a.t0) {
		lat = bpf_ktime_get_ns() - a.t0;
		lat = lat ? lat : 1;     /* 0 is "not timed" */
	}
#if defined(FST_SLOWER_NS) && !defined(FST_AGGREGATE)
	if (!fst_slow_enough(lat))
		return 0;
#endif

#ifdef FST_KNOWN_FILES
	if (a.kind == K_CLOSE && a.pad) {            /* known at sys_enter (fst_early_enter) */
		if (ret == 0 && fst_outcome_wanted(ret))
			fst_count_key(a.base1, a.op, ret, 0, 0, 0, 1);
		return 0;
	}
	if (a.kind == K_FD) {                        /* a file whose name is known: counted by key */
		if ((u64)fst_fd_file(a.fd) != a.file || !fst_event_wanted(a.op) || !fst_outcome_wanted(ret))
			return 0;
		u64 key = fst_known_key((void *)a.file);
		if (key && fst_count_key(key, a.op, ret, fst_moved(a.op, a.nr, ret, 0), lat, 0, 0))
			return 0;
	}
#endif
	if (a.kind == K_CLOSE || a.kind == K_EXEC) {
		fst_early_exit(&a, tid, ret);
		return 0;
	}
	struct fst_job *j = fst_job(&a, ret, lat);
	if (!j)
		return 0;
	switch (a.kind) {
	case K_OPEN:
		fst_open_exit(j, &a, ret);
		break;
	case K_PATH:
		fst_job_name(j, a.op, a.dirfd, a.base1, a.name1, -1, a.flags);
		if (a.name2) {
			fst_job_name(j, a.op, a.dirfd2, a.base2, a.name2, -1, a.flags);
			j->one_record = 1;
		}
		break;
	case K_FD:
		/* the fd still holds the file it held at sys_enter: the one acted on, and alive */
		if ((u64)fst_fd_file(a.fd) == a.file)
			fst_job_file(j, a.op, (void *)a.file, a.fd, 0);
		break;
	case K_FD2:
		if (a.file && (u64)fst_fd_file(a.fd) == a.file)
			fst_job_file(j, FST_EV_ACCESS, (void *)a.file, a.fd, 0);
		if (a.file2 && (u64)fst_fd_file(a.fd2) == a.file2)
			fst_job_file(j, FST_EV_MODIFY, (void *)a.file2, a.fd2, 0);
		break;
	}
	if (j->n)
		fst_progs.call(ctx, 0);
	return 0;
}

/*
 * A process's last thread exits: the files it leaves open are closed now
 * (exit_files() follows this tracepoint; exit_mm() has dropped its mappings'
 * references).  Each file whose last reference this is gets its close, as
 * fsnotify reports it: the first FST_JOB_MAX such fds below FST_EXIT_FDS.  A
 * fd table shared with another process (CLONE_FILES) is closed by the last
 * of them, so only an unshared one is walked.
 */
#ifndef FST_EXIT_FDS
#define FST_EXIT_FDS 64
#endif
RAW_TRACEPOINT_PROBE(sched_process_exit)     /* a raw tracepoint too: it tail-calls fst_namer() */
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
#if defined(FST_SLOWER_NS) && !defined(FST_AGGREGATE)
	return 0;                    /* closes at exit are not timed: never slow enough */
#endif
	if (!fst_event_wanted(FST_EV_CLOSE_WRITE) && !fst_event_wanted(FST_EV_CLOSE_NOWRITE))
		return 0;
	if (!fst_task_wanted(pid_tgid >> 32))
		return 0;
	void *files = fst_ptr(fst_task(), FST_OFF_TASK_STRUCT_FILES);
	if (!files || fst_u32(files, FST_OFF_FILES_STRUCT_COUNT) != 1)
		return 0;
	void *fdt = fst_ptr(files, FST_OFF_FILES_STRUCT_FDT);
	/*
	 * max through memory, read again each round: in a register the compiler
	 * folds it and FST_EXIT_FDS into one trip count min(max, 64) that ends the
	 * loop on fd != count, and 6.1's verifier cannot tell a known fd from a
	 * count in [1, 64] (6.8+ can): it follows fd past 64 until "The sequence
	 * of 8193 jumps is too complex".  Tested against the constant, fd stops.
	 */
	volatile u32 max = fst_u32(fdt, FST_OFF_FDTABLE_MAX_FDS);
	void **fds = fst_ptr(fdt, FST_OFF_FDTABLE_FD);
	int zero = 0;
	struct fst_job *j = jobs.lookup(&zero);
	if (!j || !fds)
		return 0;
	j->n = 0;
	j->next = 0;
	j->one_record = 0;
	j->early = 0;
	j->ret = 0;
	j->nr = FST_NR_exit_group;
	j->oflags = 0;
	j->lat = 0;
	/* few branches per fd: the verifier keeps a history of every jump on a path (6.1: at most 8192) */
	for (int fd = 0; fd < FST_EXIT_FDS; fd++) {
		if (fd >= max)
			break;
		void *file = 0;
		bpf_probe_read_kernel(&file, sizeof(file), fds + fd);
		if (!file || fst_file_refs(file) != 1 || !fst_file_on_path(file))
			continue;
		u32 i = j->n;
		if (i >= FST_JOB_MAX)
			break;
		/* FST_EV_CLOSE_NOWRITE, or FST_EV_CLOSE_WRITE (one less) for a file open for writing;
		 * one close wanted and not the other: fst_namer() skips it */
		j->op[i] = FST_EV_CLOSE_NOWRITE - ((fst_file_mode(file) & FST_FMODE_WRITE) >> 1);
		j->path[i] = (u64)file + FST_OFF_FILE_F_PATH;
		j->name[i] = 0;
		j->dirfd[i] = FST_NO_DIRFD;
		j->fd[i] = fd;
		j->flags[i] = 0;
		j->n = i + 1;
	}
	if (j->n)
		fst_progs.call(ctx, 0);
	return 0;
}

/* Every new process: its parent, for the ppid of its events. */
TRACEPOINT_PROBE(sched, sched_process_fork)
{
	u32 parent = bpf_get_current_pid_tgid() >> 32;
	if (!fst_task_wanted(parent))
		return 0;
	struct fst_event *e = fst_record(FST_REC_TASK, FST_TASK_FORK);
	if (!e)
		return 0;
	e->fd = args->child_pid;
	fst_send(e);
	return 0;
}
