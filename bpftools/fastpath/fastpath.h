/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fstrace's compiled stream path: ring buffer -> JSON Lines or text.
 *
 * The API that bpftools/fastpath/build.py hands to cffi (its cdef repeats
 * these declarations).  The record layout is bpf/fstrace.h itself.
 */
#ifndef FST_FASTPATH_H
#define FST_FASTPATH_H

#include <stddef.h>
#include <stdint.h>

/* what a formatter writes */
#define FP_JSON  0
#define FP_TEXT  1

/* fp_drain() */
#define FP_DONE  0      /* every record up to the limit is consumed */
#define FP_NEED  1      /* stopped at a record only Python can handle (why, need_*) */
#define FP_FULL  2      /* the output buffer is full: write it out, then call again */

/* why a record is handed to Python (fp_engine.why) */
#define FP_WHY_RECORD  1    /* not a file event, or one that does not decode: Python decodes it */
#define FP_WHY_CGROUP  2    /* a file event of a cgroup the engine does not know: fp_set_cgroup() */
#define FP_WHY_PPID    3    /* a file event of a process whose parent the engine does not know: fp_set_ppid() */

/* the tables Python fills (fp_set_name) */
#define FP_T_EVENT    0     /* event code -> name (abi.EVENT_NAMES) */
#define FP_T_SYSCALL  1     /* syscall number -> name (abi.SYSCALL_NAMES) */
#define FP_T_ERRNO    2     /* errno -> name (errno.errorcode) */
#define FP_T_COLOUR   3     /* event code -> ANSI colour (views/text.py EVENT_COLOURS) */
#define FP_TABLE_SIZE 1024

/* JSON fields: one op per key of views/jsonl.py EVENT_FIELDS, in order */
#define FP_OP_LITERAL  0    /* arg: the JSON text */
#define FP_OP_TS       1    /* wall-clock time, %.6f */
#define FP_OP_EVENT    2
#define FP_OP_DIR      3
#define FP_OP_NAME1    4    /* path */
#define FP_OP_NAME2    5    /* path2 */
#define FP_OP_NUMBER   6    /* a header field (off, size, is_signed), null unless flags has when_flags;
                               divisor > 1: value / divisor, as a float (as_float) or floored */
#define FP_OP_PPID     7
#define FP_OP_COMM     8
#define FP_OP_CGROUP   9    /* the cgroup's own fragment (fp_set_cgroup), keys included */
#define FP_OP_ERROR   10
#define FP_OP_SYSCALL 11
#define FP_OP_BYTES   12    /* abi.moved_bytes(): the return value of a byte-moving access/modify */

struct fp_ring {
	uint64_t *consumer;            /* the consumer position this reader advances */
	const uint64_t *producer;      /* the kernel's producer position */
	const uint8_t *data;           /* the data area, mapped twice in a row */
	uint64_t mask;                 /* its size - 1 */
};

struct fp_engine;

struct fp_engine *fp_new(int kind, int colour);
void fp_free(struct fp_engine *e);
int fp_set_name(struct fp_engine *e, int table, int index, const char *name, size_t len);
int fp_add_op(struct fp_engine *e, int code, const char *key, size_t key_len, const char *arg, size_t arg_len,
	      int off, int size, int is_signed, uint32_t when_flags, uint64_t divisor, int as_float);
void fp_configure(struct fp_engine *e, double offset, int bytes, uint32_t bytes_ops, uint32_t no_bytes_flag,
		  uint32_t dir_flag, uint32_t timed_flag);
void fp_set_moves_bytes(struct fp_engine *e, int syscall);
int fp_set_cgroup(struct fp_engine *e, uint64_t id, int wanted, const char *text, size_t len);
void fp_drop_cgroup(struct fp_engine *e, uint64_t id);
void fp_clear_cgroups(struct fp_engine *e);
void fp_set_ppid(struct fp_engine *e, uint32_t pid, int64_t ppid);     /* ppid < 0: not known (null) */
uint64_t fp_producer(const struct fp_ring *r);
int fp_drain(struct fp_engine *e, struct fp_ring *r, uint64_t limit);
void fp_skip(struct fp_engine *e, struct fp_ring *r);
int fp_format(struct fp_engine *e, const uint8_t *rec, size_t size);

/* what Python reads after a call */
char *fp_out(struct fp_engine *e);
size_t fp_out_len(struct fp_engine *e);
void fp_out_clear(struct fp_engine *e);
uint64_t fp_events(struct fp_engine *e);
int fp_why(struct fp_engine *e);
uint64_t fp_need_off(struct fp_engine *e);
uint32_t fp_need_len(struct fp_engine *e);
uint64_t fp_need_cgroup(struct fp_engine *e);
uint32_t fp_need_pid(struct fp_engine *e);

/* the record layout this was compiled with (bpftools/fastpath checks it against bpftools/abi.py) */
size_t fp_header_size(void);
int fp_header_offset(const char *field);

/* the number formats, exposed for their tests */
size_t fp_fixed6(double v, char *out);
size_t fp_repr(double v, char *out);

#endif
