/* SPDX-License-Identifier: GPL-2.0 */
/*
 * cgroup2 lifecycle: every mkdir/rmdir with its id and full path, straight
 * from the tracepoint, so a cgroup that lives for a millisecond still gets a
 * name.  Only the default (v2) hierarchy, whose hierarchy id is 0.
 */
#include "fst_common.h"

static __always_inline int fst_cgroup_record(u32 op, int root, int level, u64 id, const char *path)
{
	if (root != 0)
		return 0;
	struct fst_event *e = fst_record(FST_REC_CGROUP, op);
	if (!e)
		return 0;
	e->cgroup_id = id;
	e->syscall = level;
	long r = bpf_probe_read_kernel_str(e->data, FST_PATH_MAX, path);
	if (r > 0)
		e->len1 = r;
	fst_send(e);
	return 0;
}

TRACEPOINT_PROBE(cgroup, cgroup_mkdir)
{
	unsigned short off = args->data_loc_path & 0xFFFF;
	return fst_cgroup_record(FST_CG_MKDIR, args->root, args->level, args->id, (char *)args + off);
}

TRACEPOINT_PROBE(cgroup, cgroup_rmdir)
{
	unsigned short off = args->data_loc_path & 0xFFFF;
	return fst_cgroup_record(FST_CG_RMDIR, args->root, args->level, args->id, (char *)args + off);
}
