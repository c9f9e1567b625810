/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The counting engine (FST_AGGREGATE) and fst_file(), where every backend
 * hands a complete file event: counted in the kernel, or sent.
 */
#ifndef FST_COUNT_H
#define FST_COUNT_H

#include "fst_common.h"

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
 * File keys (fstrace.h) are built here so that every backend gets them.
 * Names are built in the kernel (fst_kernel.h), so a key is the hash of the
 * name: an absolute path, or a relative tail (dirfd FST_NO_DIRFD: a path too
 * deep or too long to complete) or a name whose directory was unknown, mixed
 * with that dirfd.
 * A key's name is sent once (FST_REC_NAME) and remembered in agg_named; user
 * space deletes a key from agg_named to have its name sent again.  An event
 * whose entry exists already this tick costs one lookup and one atomic add;
 * a backend that knows an event's key without building its name (the
 * tracepoint backend's fd events, tracepoint.bpf.c: known) calls
 * fst_count_key() and builds the name only when that returns 0.
 */
#ifndef FST_AGG_MAX
#define FST_AGG_MAX 65536
#endif
#ifndef FST_AGG_NAMES
#define FST_AGG_NAMES 65536
#endif

BPF_TABLE("hash", struct fst_agg_key, struct fst_agg_val, agg_a, FST_AGG_MAX);
BPF_TABLE("hash", struct fst_agg_key, struct fst_agg_val, agg_b, FST_AGG_MAX);
BPF_ARRAY_OF_MAPS(agg_slot, "agg_a", 1);
BPF_PERCPU_ARRAY(agg_overflow, u64, FST_EV_COUNT);
BPF_TABLE("lru_hash", u64, u8, agg_named, FST_AGG_NAMES);

/*
 * Latency: each timed event (FST_F_TIMED) adds its time to lat_ns[] and one
 * to timed[] of its entry (slot FST_LAT_SLOT(op)), and one to its log2
 * bucket in the histogram of its (cgroup, event type), in the map
 * hist_slot[0] points to: hist_a or hist_b, swapped and drained by user
 * space right after the counters, the same way.  (cgroup, event type) pairs
 * that find the map full are counted in hist_full.  The histogram counts an
 * operation even when the counter map is full.
 */
#ifndef FST_HIST_MAX
#define FST_HIST_MAX 8192
#endif
BPF_TABLE("hash", struct fst_hist_key, struct fst_hist_val, hist_a, FST_HIST_MAX);
BPF_TABLE("hash", struct fst_hist_key, struct fst_hist_val, hist_b, FST_HIST_MAX);
BPF_ARRAY_OF_MAPS(hist_slot, "hist_a", 1);
BPF_PERCPU_ARRAY(hist_full, u64, 1);
BPF_ARRAY(hist_zero, struct fst_hist_val, 1);    /* never written: a new histogram's first value */

/* A timed operation (lat > 0) of event type op in cgroup cgroup_id: one more in its bucket. */
static __always_inline void fst_hist_add(u64 cgroup_id, u32 op, u64 lat)
{
	int zero = 0;
	void *hists = hist_slot.lookup(&zero);
	if (!hists)
		return;
	struct fst_hist_key k = {.cgroup_id = cgroup_id, .op = op};
	struct fst_hist_val *h = bpf_map_lookup_elem(hists, &k);
	if (!h) {
		struct fst_hist_val *blank = hist_zero.lookup(&zero);
		if (!blank)
			return;
		bpf_map_update_elem(hists, &k, blank, BPF_NOEXIST);
		h = bpf_map_lookup_elem(hists, &k);
		if (!h) {
			u64 *n = hist_full.lookup(&zero);
			if (n)
				*n += 1;
			return;
		}
	}
	u64 b = fst_log2(lat);
	asm volatile("" : "+r"(b));
	if (b >= FST_HIST_BUCKETS)
		b = FST_HIST_BUCKETS - 1;
	__sync_fetch_and_add(&h->bucket[b], 1);
	__sync_fetch_and_add(&h->sum_ns, lat);
	if (lat > h->max_ns)
		h->max_ns = lat;
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

static __always_inline u64 fst_file_key(struct fst_event *e)
{
	u32 len = e->len1 > FST_PATH_MAX ? FST_PATH_MAX : e->len1;
	if (e->len1 == 0)
		return 0;
	u64 seed = e->data[0] == '/' ? 0 : fst_mix(3, ((u64)e->pid << 32 | (u32)e->dirfd));
	u64 key = fst_name_hash(seed, e->data, len) & ~FST_KEY_FD;
	return key ? key : 1;
}

/* One more n[i] (i: op, bounded) on an entry, its time (lat: 0 if not timed) and the bytes moved. */
static __always_inline void fst_add(struct fst_agg_val *v, u64 i, u32 op, u64 moved, u64 lat)
{
	__sync_fetch_and_add(&v->n[i], 1);
	if (lat) {
		u64 slot = FST_LAT_SLOT(op);
		asm volatile("" : "+r"(slot));
		if (slot < FST_LAT_SLOTS) {
			__sync_fetch_and_add(&v->lat_ns[slot], lat);
			__sync_fetch_and_add(&v->timed[slot], 1);
		}
	}
	if (!moved)
		return;
	if (op == FST_EV_ACCESS)
		__sync_fetch_and_add(&v->read_bytes, moved);
	else
		__sync_fetch_and_add(&v->write_bytes, moved);
}

/* A new entry for k this tick, counted (comm 0: the current task's); a full map counts in agg_overflow. */
static __always_inline void fst_add_new(void *counts, struct fst_agg_key *k, const char *comm, u64 i, u32 op,
					u64 moved, u64 lat)
{
	struct fst_agg_val fresh = {};
	if (comm)
		__builtin_memcpy(fresh.comm, comm, FST_COMM_LEN);
	else
		bpf_get_current_comm(fresh.comm, sizeof(fresh.comm));
	bpf_map_update_elem(counts, k, &fresh, BPF_NOEXIST);
	struct fst_agg_val *v = bpf_map_lookup_elem(counts, k);
	if (v) {
		fst_add(v, i, op, moved, lat);
	} else {
		u64 *n = agg_overflow.lookup(&op);
		if (n)
			*n += 1;
	}
}

/* the bytes a call moved: its return value (a zero-byte or failed call, or one whose ret is not bytes, adds none) */
static __always_inline u64 fst_moved(u32 op, long nr, long ret, u32 flags)
{
	return ret > 0 && (op == FST_EV_ACCESS || op == FST_EV_MODIFY) && FST_MOVES_BYTES(nr)
		&& !(flags & FST_F_NO_BYTES) ? (u64)ret : 0;
}

#ifdef FST_KNOWN_FILES
/*
 * One more n[op] (and the bytes moved) for (the current task's cgroup and
 * tgid, file, err), if the entry exists this tick or the file's name has been
 * sent: 1 if counted (or the map is full, counted in agg_overflow), 0 if the
 * name must be sent first.  comm: the process's name for a new entry (0: the
 * current task's); named: count even if the name is not known (it was when
 * the event began); lat: its time in ns if it was timed, else 0 (it goes to
 * its histogram too, once counted).
 */
static __always_inline int fst_count_key(u64 file, u32 op, long ret, u64 moved, u64 lat, const char *comm,
					 int named)
{
	int zero = 0;
	u64 i = op;                     /* n[i]: checked in a 64-bit register clang cannot reload unchecked */
	asm volatile("" : "+r"(i));
	if (i >= FST_EV_COUNT)
		return 1;
	void *counts = agg_slot.lookup(&zero);
	if (!counts)
		return 1;               /* not started yet */
	struct fst_agg_key k = {
		.cgroup_id = bpf_get_current_cgroup_id(),
		.file = file,
		.pid = bpf_get_current_pid_tgid() >> 32,
		.err = ret < 0 ? (u32)-ret : 0,
	};
	struct fst_agg_val *v = bpf_map_lookup_elem(counts, &k);
	if (v) {                        /* the common case: seen already this tick */
		fst_add(v, i, op, moved, lat);
		if (op == FST_EV_EXEC && comm)
			__builtin_memcpy(v->comm, comm, FST_COMM_LEN);
	} else {
		/* a key new this tick: is its name known? (forgotten ones are sent again at the next tick) */
		if (file && !named && !agg_named.lookup(&file))
			return 0;
		fst_add_new(counts, &k, comm, i, op, moved, lat);
	}
	if (lat)
		fst_hist_add(k.cgroup_id, op, lat);
	return 1;
}

/* Count e; returns its file key. */
static __always_inline u64 fst_count(struct fst_event *e)
{
	u64 file = fst_file_key(e);
	u64 moved = fst_moved(e->op, e->syscall, e->ret, e->flags);
	u64 lat = (e->flags & FST_F_TIMED) ? e->lat_ns : 0;
	if (fst_count_key(file, e->op, e->ret, moved, lat, e->comm, 0))
		return file;
	/* the name first, then the count */
	u8 one = 1;
	agg_named.update(&file, &one);
	u32 op = e->op;
	long ret = e->ret;
	e->type = FST_REC_NAME;
	e->file_id = file;
	e->base_id2 = 0;
	e->len2 = 0;
	fst_send(e);
	fst_count_key(file, op, ret, moved, lat, e->comm, 1);
	return file;
}
#else
/* Count e; returns its file key.  (Without FST_KNOWN_FILES: the engine older verifiers accept.) */
static __always_inline u64 fst_count(struct fst_event *e)
{
	int zero = 0;
	u32 op = e->op;
	if (op >= FST_EV_COUNT)
		return 0;
	void *counts = agg_slot.lookup(&zero);
	if (!counts)
		return 0;               /* not started yet */
	u64 file = fst_file_key(e);
	struct fst_agg_key k = {
		.cgroup_id = e->cgroup_id,
		.file = file,
		.pid = e->pid,
		.err = e->ret < 0 ? (u32)-e->ret : 0,
	};
	u64 moved = fst_moved(op, e->syscall, e->ret, e->flags);
	u64 lat = (e->flags & FST_F_TIMED) ? e->lat_ns : 0;
	if (lat)
		fst_hist_add(k.cgroup_id, op, lat);
	struct fst_agg_val *v = bpf_map_lookup_elem(counts, &k);
	if (v) {                        /* the common case: seen already this tick */
		fst_add(v, op, op, moved, lat);
		if (op == FST_EV_EXEC)
			__builtin_memcpy(v->comm, e->comm, FST_COMM_LEN);
		return file;
	}
	fst_add_new(counts, &k, e->comm, op, op, moved, lat);
	/* a key new this tick: is its name known? (forgotten ones are sent again at the next tick) */
	if (file && !agg_named.lookup(&file)) {
		u8 one = 1;
		agg_named.update(&file, &one);
		e->type = FST_REC_NAME;
		e->file_id = file;
		e->base_id2 = 0;
		e->len2 = 0;
		fst_send(e);
	}
	return file;
}
#endif
#endif

/*
 * Every backend hands each file event (FST_REC_FILE) here once it is
 * complete (it may be changed: the caller is done with it); other records go
 * to fst_send() directly.  Counting, returns the event's file key (else 0).
 */
static __always_inline u64 fst_file(struct fst_event *e)
{
#ifdef FST_AGGREGATE
	return fst_count(e);
#else
	if (!fst_slow_enough((e->flags & FST_F_TIMED) ? e->lat_ns : 0))
		return 0;
	fst_send(e);
	return 0;
#endif
}

#endif /* FST_COUNT_H */
