/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fstrace event ABI: the one definition of what crosses the BPF ring buffer.
 *
 * Included by every BPF program in this directory and mirrored once in
 * bpftools/abi.py (a test compares sizes and offsets with what BCC
 * compiles).  Flat, fixed-width types only.
 */
#ifndef FSTRACE_H
#define FSTRACE_H

#define FST_PATH_MAX   4096          /* bytes of one name, NUL included */
#define FST_COMM_LEN   16

/* record types */
#define FST_REC_FILE    1            /* a file event (op = FST_EV_*) */
#define FST_REC_CGROUP  2            /* cgroup2 mkdir/rmdir (op = FST_CG_*) */
#define FST_REC_TASK    3            /* bookkeeping for path resolution (op = FST_TASK_*) */
#define FST_REC_NAME    4            /* FST_AGGREGATE: the name behind a file key, sent once per key */

/* file events: the names of the JSON record contract, in this order */
#define FST_EV_OPEN            0
#define FST_EV_EXEC            1
#define FST_EV_ACCESS          2
#define FST_EV_MODIFY          3
#define FST_EV_ATTRIB          4
#define FST_EV_CLOSE_WRITE     5
#define FST_EV_CLOSE_NOWRITE   6
#define FST_EV_CREATE          7
#define FST_EV_DELETE          8
#define FST_EV_RENAME          9
#define FST_EV_SYNC           10     /* fsync(2), fdatasync(2): not an fsnotify event; timed */
#define FST_EV_COUNT          11

#define FST_CG_MKDIR    0
#define FST_CG_RMDIR    1

#define FST_TASK_FORK   0            /* fd = child pid */


/* fst_event.dirfd: name1 is absolute (or relative to the cwd, as a task gave it) */
#define FST_AT_FDCWD    -100
/* fst_event.dirfd: name1 is a relative tail, the deepest components of a path too deep or long */
#define FST_NO_DIRFD    -1

/* fst_event.flags */
#define FST_F_DIR       0x1          /* the object is a directory */
#define FST_F_NO_BYTES  0x2          /* access/modify: the bytes its syscall moved are not known (ret is not them) */
#define FST_F_TIMED     0x4          /* lat_ns is the time its syscall took (FST_TIMED) */

struct fst_event {
	__u64 ts_ns;                 /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
	__u64 cgroup_id;             /* acting task's cgroup2 id; the cgroup itself for FST_REC_CGROUP */
	__u64 file_id;               /* the open file: fd events, and the fd an open returned; 0 = unknown */
	__u64 base_id;               /* the open file behind dirfd (name1 is relative to it); 0 = unknown */
	__u64 base_id2;              /* the open file behind dirfd2 (for name2) */
	__s64 ret;                   /* syscall return value (-errno on failure) */
	__u64 lat_ns;                /* FST_F_TIMED: the syscall's time, sys_enter to sys_exit, in ns */
	__u32 type;                  /* FST_REC_* */
	__u32 op;                    /* FST_EV_*, FST_CG_* or FST_TASK_* */
	__u32 pid;                   /* tgid */
	__u32 tid;
	__u32 uid;
	__u32 syscall;               /* x86_64 syscall number; cgroup level for FST_REC_CGROUP */
	__u32 flags;                 /* FST_F_* */
	__u32 oflags;                /* open(2) flags for open/create */
	__s32 fd;                    /* fd acted on or returned; child pid for FST_TASK_FORK */
	__s32 dirfd;                 /* FST_AT_FDCWD, FST_NO_DIRFD, or the directory fd name1 is relative to */
	__s32 dirfd2;                /* directory fd for name2 */
	__u16 len1;                  /* bytes of name1 at data[0], NUL included; 0 = none */
	__u16 len2;                  /* bytes of name2 at data[len1], NUL included; 0 = none */
	char  comm[FST_COMM_LEN];
	char  data[2 * FST_PATH_MAX]; /* name1 then name2; only len1 + len2 bytes are sent */
};

/*
 * FST_AGGREGATE (fstrace top, report): file events are counted in the kernel,
 * one counter map entry per (cgroup, file, process, errno); see common.bpf.c.
 *
 * A file key names a file: a 63-bit hash of the name as the task gave it,
 * mixed with what the name is relative to, or FST_KEY_FD | file_id for a file
 * known only by the id of its open file; 0 = no file.  User space learns what
 * a key means from one FST_REC_NAME record per key: the event's own fields
 * (pid, dirfd, base_id, fd, name1), with file_id = the key and base_id2 = the
 * key of the directory name1 is relative to (0 = none known).
 */
#define FST_KEY_FD      (1ULL << 63)

struct fst_agg_key {
	__u64 cgroup_id;
	__u64 file;                  /* file key */
	__u32 pid;                   /* tgid */
	__u32 err;                   /* errno of a failed operation; 0 = it succeeded */
};

/*
 * Latency (FST_F_TIMED events): the timed event types, each a slot of the
 * counters' time sums: open 0, create 1 (an open that created its file),
 * access 2, modify 3, sync 4.  FST_LAT_SLOT(op) is that slot, or
 * FST_LAT_SLOTS for an event type that is never timed: one nibble per
 * FST_EV_* code of FST_LAT_SLOT_MAP, without a branch.
 */
#define FST_LAT_SLOTS     5
#define FST_LAT_SLOT_MAP  0x5555545515553250ULL   /* nibble per op, from op 15 down to op 0; 5: not timed */
#define FST_LAT_SLOT(op)  ((__u32)((FST_LAT_SLOT_MAP >> (((op) & 15) * 4)) & 0xf))

struct fst_agg_val {
	__u64 n[FST_EV_COUNT];       /* operations, per FST_EV_* */
	__u64 read_bytes;            /* bytes moved by its access events (FST_MOVES_BYTES) */
	__u64 write_bytes;           /* bytes moved by its modify events (FST_MOVES_BYTES) */
	__u64 lat_ns[FST_LAT_SLOTS]; /* summed time of its timed operations, per slot */
	__u64 timed[FST_LAT_SLOTS];  /* how many of its operations were timed, per slot */
	char  comm[FST_COMM_LEN];    /* the process's name at the entry's first event or latest exec */
};

/*
 * Latency histograms (FST_AGGREGATE): per (cgroup, event type), timed
 * operations per log2 bucket of their time in ns (bucket b: [2^b, 2^(b+1))
 * ns; the last one also holds everything slower), their sum and the slowest.  Double
 * buffered like the counters (hist_a, hist_b, hist_slot).
 */
#define FST_HIST_BUCKETS  40

struct fst_hist_key {
	__u64 cgroup_id;
	__u32 op;                    /* FST_EV_* */
	__u32 pad;
};

struct fst_hist_val {
	__u64 bucket[FST_HIST_BUCKETS];
	__u64 sum_ns;                /* their summed time */
	__u64 max_ns;                /* the slowest (two CPUs raising it at once: one of them) */
};

/*
 * The syscalls whose return value is the number of bytes they moved (x86_64
 * numbers): read pread64 readv preadv preadv2 (access), write pwrite64
 * writev pwritev pwritev2 (modify), and sendfile splice copy_file_range
 * (access on the source, modify on the destination).  Their access and
 * modify events carry those bytes: counted into read_bytes / write_bytes,
 * and bpftools/abi.py BYTES_SYSCALLS (the same list, by name) gives
 * streamed events their bytes.  truncate and ftruncate modify without
 * moving bytes.
 */
#define FST_BYTES_OPS   ((1 << FST_EV_ACCESS) | (1 << FST_EV_MODIFY))
#define FST_MOVES_BYTES(nr) \
	((nr) == 0 || (nr) == 17 || (nr) == 19 || (nr) == 295 || (nr) == 327 || \
	 (nr) == 1 || (nr) == 18 || (nr) == 20 || (nr) == 296 || (nr) == 328 || \
	 (nr) == 40 || (nr) == 275 || (nr) == 326)

/*
 * The syscalls whose time is measured (FST_F_TIMED): the opens (open creat
 * openat openat2), those that move bytes (FST_MOVES_BYTES) and fsync,
 * fdatasync.  bpftools/abi.py TIMED_SYSCALLS reads this list.
 */
#define FST_OPENS(nr)   ((nr) == 2 || (nr) == 85 || (nr) == 257 || (nr) == 437)
#define FST_OPEN_OPS    ((1 << FST_EV_OPEN) | (1 << FST_EV_CREATE))
#define FST_TIMED(nr) \
	(FST_OPENS(nr) || (nr) == 74 || (nr) == 75 || FST_MOVES_BYTES(nr))

#define FST_HDR_SIZE  ((unsigned long)&((struct fst_event *)0)->data)

#endif /* FSTRACE_H */
