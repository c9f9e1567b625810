/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by every backend: the one ring buffer, the loss counter, the
 * in-kernel filters and the record builder.  bpftools/probe.py compiles this
 * file followed by one backend file and cgroup.bpf.c as a single program;
 * every option arrives as a -D flag (see probe.py: cflags()).
 *
 *   FST_SELF_TGID       fstrace's own tgid (never traced)
 *   FST_EVENT_MASK      bit (1 << FST_EV_*) per wanted event
 *   FST_WANT_FAILED     also send operations that failed
 *   FST_FILTER_PID      only tgids in pid_filter
 *   FST_FILTER_COMM     only comms in comm_filter
 *   FST_FILTER_CGROUP   only tasks with an ancestor cgroup (or itself) in
 *                       cgroup_filter, levels FST_CG_MIN_LEVEL..FST_CG_MAX_LEVEL
 *   FST_RB_PAGES        ring buffer size in pages
 *   FST_WAKE_EVERY      wake user space once per this many records per CPU
 *   FST_AGGREGATE       count file events in agg_a/agg_b instead of sending
 *                       them (fstrace top, report); FST_AGG_MAX entries
 */
#include <uapi/linux/ptrace.h>
#include "fstrace.h"

#ifndef FST_RB_PAGES
#define FST_RB_PAGES 1024
#endif
#ifndef FST_WAKE_EVERY
#define FST_WAKE_EVERY 64
#endif
#ifndef FST_CG_MIN_LEVEL
#define FST_CG_MIN_LEVEL 0
#endif
#ifndef FST_CG_MAX_LEVEL
#define FST_CG_MAX_LEVEL 32
#endif

BPF_RINGBUF_OUTPUT(events, FST_RB_PAGES);
BPF_PERCPU_ARRAY(lost, u64, 1);          /* records the ring buffer had no room for */
BPF_PERCPU_ARRAY(wake, u32, 1);          /* records since the last forced wakeup */
BPF_PERCPU_ARRAY(scratch, struct fst_event, 1);

#ifdef FST_FILTER_PID
BPF_HASH(pid_filter, u32, u8, 1024);
#endif
#ifdef FST_FILTER_COMM
struct fst_comm { char comm[FST_COMM_LEN]; };
BPF_HASH(comm_filter, struct fst_comm, u8, 64);
#endif
#ifdef FST_FILTER_CGROUP
BPF_HASH(cgroup_filter, u64, u8, 65536);
#endif

/* Is the current task one the user asked for (and not fstrace itself)? */
static __always_inline int fst_task_wanted(u32 tgid)
{
	if (tgid == FST_SELF_TGID)
		return 0;
#ifdef FST_FILTER_PID
	if (!pid_filter.lookup(&tgid))
		return 0;
#endif
#ifdef FST_FILTER_COMM
	struct fst_comm c = {};
	bpf_get_current_comm(c.comm, sizeof(c.comm));
	if (!comm_filter.lookup(&c))
		return 0;
#endif
#ifdef FST_FILTER_CGROUP
	int found = 0;
	for (int level = FST_CG_MIN_LEVEL; level <= FST_CG_MAX_LEVEL; level++) {
		u64 id = bpf_get_current_ancestor_cgroup_id(level);
		if (!id)
			break;
		if (cgroup_filter.lookup(&id)) {
			found = 1;
			break;
		}
	}
	if (!found)
		return 0;
#endif
	return 1;
}

static __always_inline int fst_event_wanted(u32 op)
{
	return op < FST_EV_COUNT && ((FST_EVENT_MASK >> op) & 1);
}

static __always_inline int fst_outcome_wanted(long ret)
{
#ifdef FST_WANT_FAILED
	return 1;
#else
	return ret >= 0;
#endif
}

/* The per-CPU record under construction, its header filled for the current task. */
static __always_inline struct fst_event *fst_record(u32 type, u32 op)
{
	int zero = 0;
	struct fst_event *e = scratch.lookup(&zero);
	if (!e)
		return 0;
	u64 pid_tgid = bpf_get_current_pid_tgid();
	e->ts_ns = bpf_ktime_get_ns();
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->file_id = 0;
	e->base_id = 0;
	e->base_id2 = 0;
	e->ret = 0;
	e->type = type;
	e->op = op;
	e->pid = pid_tgid >> 32;
	e->tid = (u32)pid_tgid;
	e->uid = (u32)bpf_get_current_uid_gid();
	e->syscall = 0;
	e->flags = 0;
	e->oflags = 0;
	e->fd = -1;
	e->dirfd = -100;
	e->dirfd2 = -100;
	e->len1 = 0;
	e->len2 = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	return e;
}

/*
 * Copy up to two user-space names into the record, packed back to back.
 * A first name of the full FST_PATH_MAX leaves no room for the second.
 */
static __always_inline void fst_user_names(struct fst_event *e, const char *n1, const char *n2)
{
	long r;
	u32 off = 0;
	if (n1) {
		r = bpf_probe_read_user_str(e->data, FST_PATH_MAX, n1);
		if (r > 0)
			off = r;
	}
	e->len1 = off;
	if (n2 && off < FST_PATH_MAX) {
		r = bpf_probe_read_user_str(e->data + (off & (FST_PATH_MAX - 1)), FST_PATH_MAX, n2);
		if (r > 0)
			e->len2 = r;
	}
}

/*
 * Send the header and the names actually used; count what does not fit.
 * A send can fail with room to spare: on this 6.18 kernel one in 25 000 to
 * 110 000 sends fails with EAGAIN while the ring is nearly empty (the ring
 * buffer's lock has been a resilient spin lock, which can give up, since
 * a650d38915c1 in 6.15; bench/ringbuf_send.py measures it).  An immediate
 * retry succeeds on a quiet machine and mostly fails on a busy one, and it
 * costs nothing when the first send works: a failed send is tried twice
 * more before it counts as lost.
 */
static __always_inline void fst_send(struct fst_event *e)
{
	int zero = 0;
	u64 flags = BPF_RB_NO_WAKEUP;
	u32 *pending = wake.lookup(&zero);
	if (pending && ++*pending >= FST_WAKE_EVERY) {
		*pending = 0;
		flags = BPF_RB_FORCE_WAKEUP;
	}
	u32 size = FST_HDR_SIZE + (((u32)e->len1 + (u32)e->len2) & (2 * FST_PATH_MAX - 1));
	if (events.ringbuf_output(e, size, flags) < 0 && events.ringbuf_output(e, size, flags) < 0 &&
	    events.ringbuf_output(e, size, flags) < 0) {
		u64 *n = lost.lookup(&zero);
		if (n)
			*n += 1;
	}
}

#ifdef FST_AGGREGATE
/*
 * Counting.  Each file event adds one to n[op] of its (cgroup, file key, tgid,
 * errno) entry, and an access or modify event of a syscall that moves bytes
 * (FST_MOVES_BYTES) adds its return value to read_bytes or write_bytes of the
 * entry in the counter map agg_slot[0] points to.  User space keeps two
 * maps, agg_a and agg_b: once per tick it points agg_slot[0] at the empty one
 * (the kernel waits for every running program before that update returns, see
 * maybe_wait_bpf_programs()), then reads and empties the other at leisure.  So
 * nothing is counted twice or lost between reads, at any event rate.  Events
 * that find the map full are counted per event type in agg_overflow.
 *
 * File keys (fstrace.h) are built here so that every backend gets them:
 *   absolute name       hash(name)
 *   name relative to a  hash(name) mixed with the directory's key, when the
 *   directory fd        directory was opened while tracing (agg_fids: the key
 *                       of each open file id), else with that file id
 *   name relative to    hash(name) mixed with (tgid, cwd token): a backend
 *   the cwd             calls fst_cwd_changed() on chdir and fork
 *   no name, file_id    the key the file's open got (agg_fids), else
 *                       FST_KEY_FD | file_id
 * A key's name is sent once (FST_REC_NAME) and remembered in agg_named; user
 * space deletes a key from agg_named to have its name sent again.  An event
 * whose entry exists already this tick costs one lookup and one atomic add.
 */
#ifndef FST_AGG_MAX
#define FST_AGG_MAX 65536
#endif
#ifndef FST_AGG_NAMES
#define FST_AGG_NAMES 65536
#endif
#define FST_AT_FDCWD -100

BPF_TABLE("hash", struct fst_agg_key, struct fst_agg_val, agg_a, FST_AGG_MAX);
BPF_TABLE("hash", struct fst_agg_key, struct fst_agg_val, agg_b, FST_AGG_MAX);
BPF_ARRAY_OF_MAPS(agg_slot, "agg_a", 1);
BPF_PERCPU_ARRAY(agg_overflow, u64, FST_EV_COUNT);
BPF_TABLE("lru_hash", u64, u64, agg_fids, FST_AGG_NAMES);
BPF_TABLE("lru_hash", u64, u8, agg_named, FST_AGG_NAMES);
BPF_TABLE("lru_hash", u32, u64, agg_cwd, 32768);

static __always_inline void fst_cwd_changed(u32 tgid)
{
	u64 token = bpf_ktime_get_ns();
	agg_cwd.update(&tgid, &token);
}

static __always_inline u64 fst_mix(u64 h, u64 w)
{
	h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
	return h ^ (h >> 29);
}

/* seed mixed with the len bytes at data, eight at a time */
static __always_inline u64 fst_name_hash(u64 seed, const char *data, u32 len)
{
	u64 h = fst_mix(seed, len);
	for (u32 off = 0; off < FST_PATH_MAX; off += 8) {
		if (off >= len)
			break;
		u64 w = *(u64 *)(data + off);
		if (len - off < 8)
			w &= (1ULL << ((len - off) * 8)) - 1;
		h = fst_mix(h, w);
	}
	return h;
}

static __always_inline u64 fst_file_key(struct fst_event *e, u64 *parent)
{
	u32 len = e->len1 > FST_PATH_MAX ? FST_PATH_MAX : e->len1;
	if (e->len1 == 0) {
		if (!e->file_id)
			return 0;
		u64 *k = agg_fids.lookup(&e->file_id);
		return k ? *k : (e->file_id | FST_KEY_FD);
	}
	u64 seed = 0;                   /* an absolute name: the name alone */
	if (e->data[0] != '/' && e->dirfd == FST_AT_FDCWD) {
		u32 tgid = e->pid;
		u64 *token = agg_cwd.lookup(&tgid);
		seed = fst_mix(fst_mix(1, tgid), token ? *token : 0);
	} else if (e->data[0] != '/') {
		u64 *dir = e->base_id ? agg_fids.lookup(&e->base_id) : 0;
		if (dir) {
			*parent = *dir;
			seed = fst_mix(2, *dir);
		} else {
			seed = fst_mix(fst_mix(3, e->base_id), e->base_id ? 0 : ((u64)e->pid << 32 | (u32)e->dirfd));
		}
	}
	u64 key = fst_name_hash(seed, e->data, len) & ~FST_KEY_FD;
	return key ? key : 1;
}

static __always_inline void fst_add_bytes(struct fst_agg_val *v, u32 op, u64 moved)
{
	if (op == FST_EV_ACCESS)
		__sync_fetch_and_add(&v->read_bytes, moved);
	else
		__sync_fetch_and_add(&v->write_bytes, moved);
}

static __always_inline void fst_count(struct fst_event *e)
{
	int zero = 0;
	u32 op = e->op;
	if (op >= FST_EV_COUNT)
		return;
	void *counts = agg_slot.lookup(&zero);
	if (!counts)
		return;                 /* not started yet */
	u64 parent = 0;
	u64 file = fst_file_key(e, &parent);
	struct fst_agg_key k = {
		.cgroup_id = e->cgroup_id,
		.file = file,
		.pid = e->pid,
		.err = e->ret < 0 ? (u32)-e->ret : 0,
	};
	if (file && e->file_id && e->len1 && e->ret >= 0)
		agg_fids.update(&e->file_id, &file);
	/* bytes the call moved: its return value (a zero-byte or failed call adds none) */
	u64 moved = e->ret > 0 && (op == FST_EV_ACCESS || op == FST_EV_MODIFY) && FST_MOVES_BYTES(e->syscall)
		? (u64)e->ret : 0;
	struct fst_agg_val *v = bpf_map_lookup_elem(counts, &k);
	if (v) {                        /* the common case: seen already this tick */
		__sync_fetch_and_add(&v->n[op], 1);
		if (moved)
			fst_add_bytes(v, op, moved);
		if (op == FST_EV_EXEC)
			__builtin_memcpy(v->comm, e->comm, FST_COMM_LEN);
		return;
	}
	struct fst_agg_val fresh = {};
	__builtin_memcpy(fresh.comm, e->comm, FST_COMM_LEN);
	bpf_map_update_elem(counts, &k, &fresh, BPF_NOEXIST);
	v = bpf_map_lookup_elem(counts, &k);
	if (v) {
		__sync_fetch_and_add(&v->n[op], 1);
		if (moved)
			fst_add_bytes(v, op, moved);
	} else {
		u64 *n = agg_overflow.lookup(&op);
		if (n)
			*n += 1;
	}
	/* a key new this tick: is its name known? (forgotten ones are sent again at the next tick) */
	if (file && !agg_named.lookup(&file)) {
		u8 one = 1;
		agg_named.update(&file, &one);
		e->type = FST_REC_NAME;
		e->file_id = file;
		e->base_id2 = parent;
		e->len2 = 0;
		fst_send(e);
	}
}
#else
static __always_inline void fst_cwd_changed(u32 tgid)
{
}
#endif

/*
 * Every backend hands each file event (FST_REC_FILE) here once it is
 * complete (it may be changed: the caller is done with it); other records go
 * to fst_send() directly.
 */
static __always_inline void fst_file(struct fst_event *e)
{
#ifdef FST_AGGREGATE
	fst_count(e);
#else
	fst_send(e);
#endif
}
