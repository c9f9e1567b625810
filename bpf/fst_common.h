/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by every program: the one ring buffer, the loss counter, the
 * in-kernel filters and the record builder.  Every option arrives as a -D
 * flag (bpftools/kernel/probe.py: cflags()).
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
 *   FST_SLOWER_NS       send only timed events (FST_F_TIMED) that took at
 *                       least this many ns (trace --slower-than)
 */
#ifndef FST_COMMON_H
#define FST_COMMON_H

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

/* Is an event that took lat_ns (0: not timed) one to send?  Only timed ones that slow with FST_SLOWER_NS. */
static __always_inline int fst_slow_enough(u64 lat_ns)
{
#ifdef FST_SLOWER_NS
	return lat_ns >= FST_SLOWER_NS && lat_ns;
#else
	return 1;
#endif
}

/* floor(log2(v)) for v > 0, without a loop or a branch per bit; 0 for v = 0 */
static __always_inline u32 fst_log2(u64 v)
{
	u32 r = (v > 0xFFFFFFFFULL) << 5;
	v >>= r;
	u32 s = (v > 0xFFFF) << 4;
	v >>= s; r |= s;
	s = (v > 0xFF) << 3;
	v >>= s; r |= s;
	s = (v > 0xF) << 2;
	v >>= s; r |= s;
	s = (v > 0x3) << 1;
	v >>= s; r |= s;
	r |= (v >> 1);
	return r;
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
	e->lat_ns = 0;
	e->type = type;
	e->op = op;
	e->pid = pid_tgid >> 32;
	e->tid = (u32)pid_tgid;
	e->uid = (u32)bpf_get_current_uid_gid();
	e->syscall = 0;
	e->flags = 0;
	e->oflags = 0;
	e->fd = -1;
	e->dirfd = FST_AT_FDCWD;
	e->dirfd2 = FST_AT_FDCWD;
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

#endif /* FST_COMMON_H */
