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
 * whose entry exists already this tick costs one lookup and one atomic add.
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
	u64 file = fst_file_key(e);
	struct fst_agg_key k = {
		.cgroup_id = e->cgroup_id,
		.file = file,
		.pid = e->pid,
		.err = e->ret < 0 ? (u32)-e->ret : 0,
	};
	/* bytes the call moved: its return value (a zero-byte or failed call adds none) */
	u64 moved = e->ret > 0 && (op == FST_EV_ACCESS || op == FST_EV_MODIFY) && FST_MOVES_BYTES(e->syscall)
		&& !(e->flags & FST_F_NO_BYTES) ? (u64)e->ret : 0;
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
		e->base_id2 = 0;
		e->len2 = 0;
		fst_send(e);
	}
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

#endif /* FST_COUNT_H */
