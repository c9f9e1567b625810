/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The tracepoint backend: file syscalls seen at raw_syscalls:sys_enter and
 * sys_exit (two attach points instead of ninety, so attaching and detaching
 * take milliseconds), mapped onto fstrace's event names.  It reads syscall
 * arguments and user memory only, never kernel structs, so it is correct
 * whatever kernel headers BCC compiled it with.
 *
 * Paths are sent as the task gave them, with the dirfd they are relative to.
 * fd-based events name the open file by a file_id assigned at open time and
 * kept in an in-kernel (tgid, fd) table; user space maps ids to paths from the
 * open records it has seen (bpftools/paths.py).
 *
 * x86_64 syscall numbers; 32-bit (ia32) tasks use other numbers and are not
 * decoded.
 */
#include <asm/unistd.h>

#ifndef __NR_fchmodat2
#define __NR_fchmodat2 452
#endif
#ifndef __NR_setxattrat
#define __NR_setxattrat 463
#endif
#ifndef __NR_removexattrat
#define __NR_removexattrat 466
#endif
#ifndef __NR_close_range
#define __NR_close_range 436
#endif
#ifndef __NR_openat2
#define __NR_openat2 437
#endif

#define FST_AT_FDCWD       -100
#define FST_AT_REMOVEDIR   0x200
#define FST_O_ACCMODE      03
#define FST_O_CREAT        0100
#define FST_O_TRUNC        01000
#define FST_O_DIRECTORY    0200000
#define FST_O_CLOEXEC      02000000
#define FST_O_PATH         010000000
#define FST_O_TMPFILE      020000000
#define FST_F_DUPFD        0
#define FST_F_DUPFD_CLOEXEC 1030

#ifndef FST_FD_MAX
#define FST_FD_MAX 65536
#endif

/* What a syscall does, decided at sys_enter. */
#define K_PATH     1     /* file event on name1 (relative to dirfd) [and name2] */
#define K_FD       2     /* file event on an open fd */
#define K_OPEN     3     /* open: event + new fd-table entry */
#define K_CLOSE    4
#define K_DUP      5     /* fd = old fd, arg = new fd (-1: the return value) */
#define K_CLOSE_RANGE 6  /* fd = first, arg = last */
#define K_CHDIR    7
#define K_FCHDIR   8
#define K_EXEC     9

struct fst_args {
	u64 name1;
	u64 name2;
	u64 arg;
	s32 fd;
	s32 dirfd;
	s32 dirfd2;
	u32 nr;
	u32 kind;
	u32 op;
	u32 flags;
	u32 oflags;
};

/* fd-table entry mode bits */
#define FD_WRITE    1
#define FD_CLOEXEC  2

struct fd_key {
	u32 tgid;
	s32 fd;
};

struct fd_val {
	u64 file_id;
	u64 epoch;       /* task_gen.epoch of the owning process when stored */
	u32 exec;        /* task_gen.exec when stored */
	u32 mode;        /* FD_* */
};

/* One per process incarnation: a new epoch at fork, exec counted. */
struct task_gen {
	u64 epoch;
	u32 exec;
	u32 pad;
};

BPF_HASH(inflight, u32, struct fst_args, 16384);
BPF_TABLE("lru_hash", struct fd_key, struct fd_val, fds, FST_FD_MAX);
BPF_TABLE("lru_hash", u32, struct task_gen, gens, 32768);
BPF_TABLE("lru_hash", u32, u32, parents, 32768);   /* pid -> parent tgid, from fork */
BPF_HASH(refs, u64, u32, FST_FD_MAX);              /* file_id -> extra fds from dup */
BPF_ARRAY(next_id, u64, 1);
struct exec_name { char name[FST_PATH_MAX]; };
/* execve's name, read at sys_enter: the caller's memory is gone at sys_exit */
BPF_F_TABLE("hash", u32, struct exec_name, exec_names, 1024, BPF_F_NO_PREALLOC);
BPF_PERCPU_ARRAY(dropped, u64, 1);                  /* syscalls not followed: inflight full */

static __always_inline u64 fst_new_id(void)
{
	int zero = 0;
	u64 *n = next_id.lookup(&zero);
	if (!n)
		return 0;
	return __sync_fetch_and_add(n, 1) + 1;
}

static __always_inline struct task_gen fst_gen(u32 tgid)
{
	struct task_gen g = {};
	struct task_gen *p = gens.lookup(&tgid);
	if (p)
		g = *p;
	return g;
}

static __always_inline int fd_valid(struct fd_val *v, struct task_gen *g)
{
	if (v->epoch != g->epoch)
		return 0;
	return !(v->mode & FD_CLOEXEC) || v->exec == g->exec;
}

/*
 * The fd-table entry of (tgid, fd), or 0.  A process that has not opened fd
 * itself may have inherited it across fork: look in its ancestors and copy
 * the entry over (a close-on-exec entry is not inherited past an exec).
 */
static __always_inline struct fd_val *fd_get(u32 tgid, s32 fd)
{
	if (fd < 0)
		return 0;
	struct task_gen g = fst_gen(tgid);
	struct fd_key k = {.tgid = tgid, .fd = fd};
	struct fd_val *v = fds.lookup(&k);
	if (v) {
		if (fd_valid(v, &g))
			return v;
		fds.delete(&k);
		return 0;
	}
	u32 p = tgid;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		u32 *pp = parents.lookup(&p);
		if (!pp || *pp == p)
			return 0;
		p = *pp;
		struct fd_key pk = {.tgid = p, .fd = fd};
		struct fd_val *pv = fds.lookup(&pk);
		if (!pv)
			continue;
		struct task_gen pg = fst_gen(p);
		if (!fd_valid(pv, &pg) || ((pv->mode & FD_CLOEXEC) && g.exec))
			return 0;
		struct fd_val nv = *pv;
		nv.epoch = g.epoch;
		nv.exec = g.exec;
		fds.update(&k, &nv);
		return fds.lookup(&k);
	}
	return 0;
}

static __always_inline void fd_put(u32 tgid, s32 fd, u64 file_id, u32 mode)
{
	struct task_gen g = fst_gen(tgid);
	struct fd_key k = {.tgid = tgid, .fd = fd};
	struct fd_val v = {.file_id = file_id, .epoch = g.epoch, .exec = g.exec, .mode = mode};
	fds.update(&k, &v);
}

static __always_inline void fd_del(u32 tgid, s32 fd)
{
	struct fd_key k = {.tgid = tgid, .fd = fd};
	fds.delete(&k);
}

static __always_inline u64 fd_file_id(u32 tgid, s32 fd)
{
	struct fd_val *v = fd_get(tgid, fd);
	return v ? v->file_id : 0;
}

/* Fill a from the syscall number and arguments; 0 if not a syscall we follow. */
static __always_inline int fst_decode(struct fst_args *a, long nr, unsigned long *ar)
{
	a->nr = nr;
	a->dirfd = FST_AT_FDCWD;
	a->dirfd2 = FST_AT_FDCWD;
	a->fd = -1;
	switch (nr) {
	case __NR_open:
		a->kind = K_OPEN; a->name1 = ar[0]; a->oflags = ar[1];
		return 1;
	case __NR_creat:
		a->kind = K_OPEN; a->name1 = ar[0]; a->oflags = FST_O_CREAT | FST_O_TRUNC | 01;
		return 1;
	case __NR_openat:
		a->kind = K_OPEN; a->dirfd = ar[0]; a->name1 = ar[1]; a->oflags = ar[2];
		return 1;
	case __NR_openat2: {
		u64 how_flags = 0;
		bpf_probe_read_user(&how_flags, sizeof(how_flags), (void *)ar[2]);
		a->kind = K_OPEN; a->dirfd = ar[0]; a->name1 = ar[1]; a->oflags = how_flags;
		return 1;
	}
	case __NR_mkdir:
		a->kind = K_PATH; a->op = FST_EV_CREATE; a->flags = FST_F_DIR; a->name1 = ar[0];
		return 1;
	case __NR_mkdirat:
		a->kind = K_PATH; a->op = FST_EV_CREATE; a->flags = FST_F_DIR; a->dirfd = ar[0]; a->name1 = ar[1];
		return 1;
	case __NR_mknod:
		a->kind = K_PATH; a->op = FST_EV_CREATE; a->name1 = ar[0];
		return 1;
	case __NR_mknodat:
		a->kind = K_PATH; a->op = FST_EV_CREATE; a->dirfd = ar[0]; a->name1 = ar[1];
		return 1;
	case __NR_unlink:
		a->kind = K_PATH; a->op = FST_EV_DELETE; a->name1 = ar[0];
		return 1;
	case __NR_unlinkat:
		a->kind = K_PATH; a->op = FST_EV_DELETE; a->dirfd = ar[0]; a->name1 = ar[1];
		a->flags = (ar[2] & FST_AT_REMOVEDIR) ? FST_F_DIR : 0;
		return 1;
	case __NR_rmdir:
		a->kind = K_PATH; a->op = FST_EV_DELETE; a->flags = FST_F_DIR; a->name1 = ar[0];
		return 1;
	case __NR_rename:
		a->kind = K_PATH; a->op = FST_EV_RENAME; a->name1 = ar[0]; a->name2 = ar[1];
		return 1;
	case __NR_renameat:
	case __NR_renameat2:
		a->kind = K_PATH; a->op = FST_EV_RENAME; a->dirfd = ar[0]; a->name1 = ar[1];
		a->dirfd2 = ar[2]; a->name2 = ar[3];
		return 1;
	case __NR_link:
	case __NR_symlink:
		a->kind = K_PATH; a->op = FST_EV_CREATE; a->name1 = ar[1];
		return 1;
	case __NR_linkat:
		a->kind = K_PATH; a->op = FST_EV_CREATE; a->dirfd = ar[2]; a->name1 = ar[3];
		return 1;
	case __NR_symlinkat:
		a->kind = K_PATH; a->op = FST_EV_CREATE; a->dirfd = ar[1]; a->name1 = ar[2];
		return 1;
	case __NR_chmod:
	case __NR_chown:
	case __NR_lchown:
	case __NR_utime:
	case __NR_utimes:
	case __NR_setxattr:
	case __NR_lsetxattr:
	case __NR_removexattr:
	case __NR_lremovexattr:
		a->kind = K_PATH; a->op = FST_EV_ATTRIB; a->name1 = ar[0];
		return 1;
	case __NR_fchmodat:
	case __NR_fchmodat2:
	case __NR_fchownat:
	case __NR_futimesat:
	case __NR_utimensat:          /* a NULL name means the dirfd itself */
	case __NR_setxattrat:
	case __NR_removexattrat:
		a->kind = K_PATH; a->op = FST_EV_ATTRIB; a->dirfd = ar[0]; a->name1 = ar[1];
		return 1;
	case __NR_fchmod:
	case __NR_fchown:
	case __NR_fsetxattr:
	case __NR_fremovexattr:
		a->kind = K_FD; a->op = FST_EV_ATTRIB; a->fd = ar[0];
		return 1;
	case __NR_truncate:
		a->kind = K_PATH; a->op = FST_EV_MODIFY; a->name1 = ar[0];
		return 1;
	case __NR_ftruncate:
		a->kind = K_FD; a->op = FST_EV_MODIFY; a->fd = ar[0];
		return 1;
	case __NR_write:
	case __NR_pwrite64:
	case __NR_writev:
	case __NR_pwritev:
	case __NR_pwritev2:
		a->kind = K_FD; a->op = FST_EV_MODIFY; a->fd = ar[0];
		return 1;
	case __NR_read:
	case __NR_pread64:
	case __NR_readv:
	case __NR_preadv:
	case __NR_preadv2:
		a->kind = K_FD; a->op = FST_EV_ACCESS; a->fd = ar[0];
		return 1;
	case __NR_close:
		a->kind = K_CLOSE; a->fd = ar[0];
		return 1;
	case __NR_execve:
		a->kind = K_EXEC; a->op = FST_EV_EXEC; a->name1 = ar[0];
		return 1;
	case __NR_execveat:
		a->kind = K_EXEC; a->op = FST_EV_EXEC; a->dirfd = ar[0]; a->name1 = ar[1];
		return 1;
	case __NR_chdir:
		a->kind = K_CHDIR; a->name1 = ar[0];
		return 1;
	case __NR_fchdir:
		a->kind = K_FCHDIR; a->fd = ar[0];
		return 1;
	case __NR_dup:
		a->kind = K_DUP; a->fd = ar[0]; a->arg = (u64)-1;
		return 1;
	case __NR_dup2:
		a->kind = K_DUP; a->fd = ar[0]; a->arg = ar[1];
		return 1;
	case __NR_dup3:
		a->kind = K_DUP; a->fd = ar[0]; a->arg = ar[1];
		a->oflags = (ar[2] & FST_O_CLOEXEC) ? FST_O_CLOEXEC : 0;
		return 1;
	case __NR_fcntl:
		if (ar[1] != FST_F_DUPFD && ar[1] != FST_F_DUPFD_CLOEXEC)
			return 0;
		a->kind = K_DUP; a->fd = ar[0]; a->arg = (u64)-1;
		a->oflags = ar[1] == FST_F_DUPFD_CLOEXEC ? FST_O_CLOEXEC : 0;
		return 1;
	case __NR_close_range:
		a->kind = K_CLOSE_RANGE; a->fd = ar[0]; a->arg = ar[1];
		return 1;
	}
	return 0;
}

static __always_inline void fst_save_exec_name(u32 tid, const char *name)
{
	int zero = 0;
	struct fst_event *blank = scratch.lookup(&zero);
	if (!blank)
		return;
	exec_names.update(&tid, (struct exec_name *)blank->data);
	struct exec_name *n = exec_names.lookup(&tid);
	if (n)
		bpf_probe_read_user_str(n->name, sizeof(n->name), name);
}

static __always_inline void fst_exec_exit(struct fst_args *a, u32 tid, u32 tgid, long ret)
{
	if (ret == 0) {
		struct task_gen g = fst_gen(tgid);
		g.exec++;
		gens.update(&tgid, &g);
	}
	struct exec_name *n = exec_names.lookup(&tid);
	if (!n)
		return;
	if (fst_event_wanted(FST_EV_EXEC) && fst_outcome_wanted(ret)) {
		struct fst_event *e = fst_record(FST_REC_FILE, FST_EV_EXEC);
		if (e) {
			e->ret = ret;
			e->syscall = a->nr;
			e->dirfd = a->dirfd;
			e->base_id = fd_file_id(tgid, a->dirfd);
			long r = bpf_probe_read_kernel_str(e->data, FST_PATH_MAX, n->name);
			if (r > 0)
				e->len1 = r;
			fst_file(e);
		}
	}
	exec_names.delete(&tid);
}

TRACEPOINT_PROBE(raw_syscalls, sys_enter)
{
	struct fst_args a = {};
	unsigned long ar[6];
	long nr = args->id;

	/* cheap exit for the hot syscalls nobody asked for */
	if (nr == __NR_read || nr == __NR_pread64 || nr == __NR_readv ||
	    nr == __NR_preadv || nr == __NR_preadv2) {
		if (!fst_event_wanted(FST_EV_ACCESS))
			return 0;
	} else if (nr == __NR_write || nr == __NR_pwrite64 || nr == __NR_writev ||
		   nr == __NR_pwritev || nr == __NR_pwritev2) {
		if (!fst_event_wanted(FST_EV_MODIFY))
			return 0;
	}
	bpf_probe_read_kernel(ar, sizeof(ar), args->args);
	if (!fst_decode(&a, nr, ar))
		return 0;
	u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!fst_task_wanted(pid_tgid >> 32))
		return 0;
	u32 tid = (u32)pid_tgid;
	if (a.kind == K_EXEC && fst_event_wanted(FST_EV_EXEC))
		fst_save_exec_name(tid, (const char *)a.name1);
	if (inflight.update(&tid, &a) < 0) {
		int zero = 0;
		u64 *n = dropped.lookup(&zero);
		if (n)
			*n += 1;
	}
	return 0;
}

static __always_inline void fst_emit(struct fst_args *a, long ret, u32 op, u64 file_id)
{
	if (!fst_event_wanted(op) || !fst_outcome_wanted(ret))
		return;
	struct fst_event *e = fst_record(FST_REC_FILE, op);
	if (!e)
		return;
	e->ret = ret;
	e->syscall = a->nr;
	e->flags = a->flags;
	e->oflags = a->oflags;
	e->fd = a->fd;
	e->dirfd = a->dirfd;
	e->dirfd2 = a->dirfd2;
	e->file_id = file_id;
	if (a->kind == K_PATH) {
		e->base_id = fd_file_id(e->pid, a->dirfd);
		e->base_id2 = fd_file_id(e->pid, a->dirfd2);
		fst_user_names(e, (const char *)a->name1, (const char *)a->name2);
	}
	fst_file(e);
}

static __always_inline void fst_open_exit(struct fst_args *a, u32 tgid, long ret)
{
	u32 oflags = a->oflags;
	u32 op = (oflags & FST_O_CREAT) ? FST_EV_CREATE : FST_EV_OPEN;
	if ((oflags & FST_O_DIRECTORY) && (oflags & FST_O_TMPFILE) != FST_O_TMPFILE)
		a->flags |= FST_F_DIR;
	u64 id = 0;
	if (ret >= 0) {
		u32 mode = 0;
		if ((oflags & FST_O_ACCMODE) != 0 && !(oflags & FST_O_PATH))
			mode |= FD_WRITE;
		if (oflags & FST_O_CLOEXEC)
			mode |= FD_CLOEXEC;
		id = fst_new_id();
		fd_put(tgid, ret, id, mode);
	}
	if (!fst_event_wanted(op) || !fst_outcome_wanted(ret))
		return;
	struct fst_event *e = fst_record(FST_REC_FILE, op);
	if (!e)
		return;
	e->ret = ret;
	e->syscall = a->nr;
	e->flags = a->flags;
	e->oflags = oflags;
	e->fd = ret;
	e->dirfd = a->dirfd;
	e->file_id = id;
	e->base_id = fd_file_id(tgid, a->dirfd);
	fst_user_names(e, (const char *)a->name1, 0);
	fst_file(e);
}

static __always_inline void fst_task_record(struct fst_args *a, u32 tgid)
{
	struct fst_event *e = fst_record(FST_REC_TASK, FST_TASK_CHDIR);
	if (!e)
		return;
	e->syscall = a->nr;
	e->dirfd = a->dirfd;
	e->fd = a->fd;
	if (a->kind == K_FCHDIR)
		e->file_id = fd_file_id(tgid, a->fd);
	else
		fst_user_names(e, (const char *)a->name1, 0);
	e->base_id = fd_file_id(tgid, a->dirfd);
	fst_send(e);
}

TRACEPOINT_PROBE(raw_syscalls, sys_exit)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
	u32 tid = (u32)pid_tgid;
	u32 tgid = pid_tgid >> 32;
	struct fst_args *ap = inflight.lookup(&tid);
	if (!ap)
		return 0;
	struct fst_args a = *ap;
	inflight.delete(&tid);
	long ret = args->ret;
	if (a.nr != args->id)
		return 0;

	switch (a.kind) {
	case K_OPEN:
		fst_open_exit(&a, tgid, ret);
		break;
	case K_PATH:
		fst_emit(&a, ret, a.op, 0);
		break;
	case K_EXEC:
		fst_exec_exit(&a, tid, tgid, ret);
		break;
	case K_FD: {
		struct fd_val *v = fd_get(tgid, a.fd);
		if (v)                                  /* untracked fds: pipes, sockets, ... */
			fst_emit(&a, ret, a.op, v->file_id);
		break;
	}
	case K_CLOSE: {
		struct fd_val *v = fd_get(tgid, a.fd);
		if (!v || ret < 0)
			break;
		u64 id = v->file_id;
		u32 op = (v->mode & FD_WRITE) ? FST_EV_CLOSE_WRITE : FST_EV_CLOSE_NOWRITE;
		fd_del(tgid, a.fd);
		u32 *extra = refs.lookup(&id);
		if (extra && *extra) {          /* another fd still refers to the file */
			*extra -= 1;
			break;
		}
		refs.delete(&id);
		fst_emit(&a, ret, op, id);
		break;
	}
	case K_DUP: {
		if (ret < 0)
			break;
		struct fd_val *v = fd_get(tgid, a.fd);
		if (v) {
			u32 mode = v->mode & ~FD_CLOEXEC;
			if (a.oflags & FST_O_CLOEXEC)
				mode |= FD_CLOEXEC;
			u64 id = v->file_id;
			u32 one = 1, *extra = refs.lookup(&id);
			if (extra)
				*extra += 1;
			else
				refs.update(&id, &one);
			fd_put(tgid, ret, id, mode);
		} else {
			fd_del(tgid, ret);
		}
		break;
	}
	case K_CLOSE_RANGE: {
		if (ret < 0)
			break;
		u32 last = a.arg > 0x7fffffff ? 0x7fffffff : (u32)a.arg;
		for (int i = 0; i < 256; i++) {
			s32 fd = a.fd + i;
			if (fd < 0 || (u32)fd > last)
				break;
			fd_del(tgid, fd);
		}
		break;
	}
	case K_CHDIR:
	case K_FCHDIR:
		if (ret == 0) {
			fst_cwd_changed(tgid);
			fst_task_record(&a, tgid);
		}
		break;
	}
	return 0;
}

/* Every new process: inherits its parent's fds and cwd, starts a new incarnation. */
TRACEPOINT_PROBE(sched, sched_process_fork)
{
	u32 parent = bpf_get_current_pid_tgid() >> 32;
	u32 child = args->child_pid;
	struct task_gen g = {.epoch = fst_new_id()};
	gens.update(&child, &g);
	parents.update(&child, &parent);
	fst_cwd_changed(child);
	if (!fst_task_wanted(parent))
		return 0;
	struct fst_event *e = fst_record(FST_REC_TASK, FST_TASK_FORK);
	if (!e)
		return 0;
	e->fd = child;
	fst_send(e);
	return 0;
}
