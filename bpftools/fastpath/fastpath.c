/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fstrace's compiled stream path: the records of the BPF ring buffer as
 * JSON Lines or text, written into one buffer per poll.
 *
 * What it does per record is what the Python path does (session/stream.py
 * into views/jsonl.py and views/text.py, which stay as the test oracle;
 * tests/unit/test_fastpath.py proves byte-for-byte identical output):
 * decode, normalise the names, escape them, format.  What needs state it
 * cannot know is Python's: a record that is not a file event (cgroup
 * births and deaths, forks), a cgroup it has not been told about, a
 * process whose parent it has not been told about.  It stops there with
 * FP_NEED and the record unconsumed; Python handles it (and tells the
 * engine what it learnt) and calls again.
 *
 * JSON keys come from a program of ops built in Python from the field table
 * (views/jsonl.py EVENT_FIELDS, EVENT_SOURCES): a new numeric header field
 * needs no C.  The record layout is bpf/fstrace.h; bpftools/fastpath checks
 * at import that it matches bpftools/abi.py.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef uint64_t __u64;
typedef int64_t __s64;
typedef uint32_t __u32;
typedef int32_t __s32;
typedef uint16_t __u16;
#include "fstrace.h"
#include "fastpath.h"

#define RB_BUSY     (1U << 31)
#define RB_DISCARD  (1U << 30)
#define RB_HDR      8
#define BUSY_SPINS  20000           /* pauses to wait for a reserved record's commit */
#define OUT_SOFT    (1U << 20)      /* FP_FULL once this much output waits */
#define MAX_OPS     64
#define CG_SLOTS    16384           /* open addressing, power of two */
#define CG_MAX      8192            /* entries (session/stream.py MAX_CGROUPS_SEEN); more: start afresh */
#define PID_SLOTS   65536           /* direct-mapped: a collision only asks Python again */
#define WHO_WIDTH   22
#define WHAT_WIDTH  14

struct op {
	int code;
	char *key;                      /* ,"name":  (the first one starts with {) */
	size_t key_len;
	char *arg;
	size_t arg_len;
	int off, size, is_signed;
	uint32_t when_flags;
	uint64_t divisor;
	int as_float;
};

struct name {
	char *s;
	size_t len;
};

struct cg_slot {
	uint64_t id;
	char *text;
	uint32_t len;
	uint8_t state;                  /* 0 empty, 1 used, 2 deleted */
	uint8_t wanted;
};

struct pid_slot {
	uint32_t pid;
	uint8_t valid;
	int64_t ppid;
};

struct fp_engine {
	int kind, colour;
	char *out;
	size_t out_len, out_cap;
	uint64_t events;
	int why;
	uint64_t need_off, need_cgroup;
	uint32_t need_len, need_pid;

	double offset;                  /* wall clock - monotonic clock */
	int bytes;                      /* the backend's access/modify records carry their bytes */
	uint32_t bytes_ops, no_bytes_flag, dir_flag, timed_flag;
	uint8_t moves_bytes[FP_TABLE_SIZE];
	struct name tables[4][FP_TABLE_SIZE];
	int n_events;

	struct op ops[MAX_OPS];
	int n_ops;

	struct cg_slot *cg;
	int cg_used;                    /* used + deleted slots */
	struct pid_slot *pids;

	int64_t clock_sec;              /* the second clock[] shows */
	char clock[32];
	size_t clock_len;

	uint8_t scratch[2][2 * FST_PATH_MAX + 16];
};

/* --- output ------------------------------------------------------------------ */

static int reserve(struct fp_engine *e, size_t n)
{
	if (e->out_len + n <= e->out_cap)
		return 0;
	size_t cap = e->out_cap ? e->out_cap : 1 << 16;
	while (cap < e->out_len + n)
		cap *= 2;
	char *p = realloc(e->out, cap);
	if (!p)
		return -1;
	e->out = p;
	e->out_cap = cap;
	return 0;
}

/* Space for n more bytes is reserved by the caller: these do not check. */
static inline void put(struct fp_engine *e, const void *s, size_t n)
{
	memcpy(e->out + e->out_len, s, n);
	e->out_len += n;
}

static inline void putc_(struct fp_engine *e, char c)
{
	e->out[e->out_len++] = c;
}

#define PUTS(e, lit) put(e, lit, sizeof(lit) - 1)

static const char HEX[] = "0123456789abcdef";

static size_t u64_digits(uint64_t v, char *buf)
{
	char tmp[24];
	size_t n = 0;
	do {
		tmp[n++] = '0' + v % 10;
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	return n;
}

static inline void put_u64(struct fp_engine *e, uint64_t v)
{
	e->out_len += u64_digits(v, e->out + e->out_len);
}

static inline void put_s64(struct fp_engine *e, int64_t v)
{
	if (v < 0) {
		putc_(e, '-');
		put_u64(e, -(uint64_t)v);
	} else {
		put_u64(e, v);
	}
}

/* --- numbers as Python writes them -------------------------------------------- */

/*
 * "%.6f" % v, exact: the binary value rounded half to even at the sixth
 * decimal, as Python's dtoa and glibc both do.  Values outside [1, 2^53)
 * (never a timestamp) go through snprintf, which rounds the same way.
 */
size_t fp_fixed6(double v, char *out)
{
	if (!(v >= 1.0 && v < 9007199254740992.0))
		return snprintf(out, 64, "%.6f", v);
	int exp;
	double m = frexp(v, &exp);          /* v = m * 2^exp, 0.5 <= m < 1 */
	uint64_t mant = (uint64_t)ldexp(m, 53);
	int shift = 53 - exp;               /* v = mant / 2^shift, 0 <= shift <= 52 */
	uint64_t whole = shift ? mant >> shift : mant;
	uint64_t frac = shift ? mant & ((1ULL << shift) - 1) : 0;
	uint64_t micro = 0;
	if (shift) {
		unsigned __int128 num = (unsigned __int128)frac * 1000000u;
		uint64_t q = (uint64_t)(num >> shift);
		unsigned __int128 rem = num - ((unsigned __int128)q << shift);
		unsigned __int128 half = (unsigned __int128)1 << (shift - 1);
		if (rem > half || (rem == half && (q & 1)))
			q++;
		if (q == 1000000) {
			q = 0;
			whole++;
		}
		micro = q;
	}
	size_t n = u64_digits(whole, out);
	out[n++] = '.';
	for (int i = 5; i >= 0; i--) {
		out[n + i] = '0' + micro % 10;
		micro /= 10;
	}
	return n + 6;
}

/* repr(v) of a Python float: the shortest digits that read back as v, in repr's layout. */
size_t fp_repr(double v, char *out)
{
	char buf[40];
	if (isnan(v))
		return (size_t)sprintf(out, "NaN");     /* as json.dumps writes them */
	if (isinf(v))
		return (size_t)sprintf(out, v < 0 ? "-Infinity" : "Infinity");
	int prec;
	for (prec = 1; prec < 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*e", prec - 1, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	snprintf(buf, sizeof(buf), "%.*e", prec - 1, v);
	/* buf: [-]d[.ddd]e[+-]xx */
	char digits[24];
	size_t nd = 0, n = 0;
	const char *p = buf;
	int neg = *p == '-';
	if (neg)
		p++;
	for (; *p && *p != 'e'; p++)
		if (*p != '.')
			digits[nd++] = *p;
	int exp10 = atoi(p + 1);
	while (nd > 1 && digits[nd - 1] == '0')
		nd--;
	int decpt = exp10 + 1;              /* v = 0.digits * 10^decpt */
	if (neg)
		out[n++] = '-';
	if (decpt > -4 && decpt <= 16) {
		if (decpt <= 0) {
			out[n++] = '0';
			out[n++] = '.';
			for (int i = 0; i < -decpt; i++)
				out[n++] = '0';
			memcpy(out + n, digits, nd);
			n += nd;
		} else if ((size_t)decpt >= nd) {
			memcpy(out + n, digits, nd);
			n += nd;
			for (size_t i = nd; i < (size_t)decpt; i++)
				out[n++] = '0';
			out[n++] = '.';
			out[n++] = '0';
		} else {
			memcpy(out + n, digits, decpt);
			n += decpt;
			out[n++] = '.';
			memcpy(out + n, digits + decpt, nd - decpt);
			n += nd - decpt;
		}
	} else {
		out[n++] = digits[0];
		if (nd > 1) {
			out[n++] = '.';
			memcpy(out + n, digits + 1, nd - 1);
			n += nd - 1;
		}
		n += sprintf(out + n, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
	}
	return n;
}

/* --- names --------------------------------------------------------------------- */

/* Bytes of the valid UTF-8 sequence at s (Unicode table 3-7, as Python decodes), or 0. */
static inline size_t utf8_len(const uint8_t *s, size_t n)
{
	uint8_t c = s[0];
	if (c >= 0xC2 && c <= 0xDF)
		return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
	if (c >= 0xE0 && c <= 0xEF) {
		if (n < 3 || (s[2] & 0xC0) != 0x80)
			return 0;
		uint8_t lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
		return s[1] >= lo && s[1] <= hi ? 3 : 0;
	}
	if (c >= 0xF0 && c <= 0xF4) {
		if (n < 4 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
			return 0;
		uint8_t lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
		return s[1] >= lo && s[1] <= hi ? 4 : 0;
	}
	return 0;
}

/*
 * A name as a JSON string: escape.decode_name() (UTF-8 as is, each byte
 * that is not UTF-8 as the text \xNN) through json's encode_basestring
 * (", \ and controls escaped, nothing else).  6 bytes out per byte in, at
 * most, plus the quotes.
 */
static void put_json_str(struct fp_engine *e, const uint8_t *s, size_t n)
{
	char *o = e->out + e->out_len;
	*o++ = '"';
	size_t i = 0;
	while (i < n) {
		uint8_t c = s[i];
		if (c >= 0x20 && c < 0x80) {
			if (c == '"' || c == '\\')
				*o++ = '\\';
			*o++ = c;
			i++;
		} else if (c < 0x20) {
			*o++ = '\\';
			switch (c) {
			case '\n': *o++ = 'n'; break;
			case '\r': *o++ = 'r'; break;
			case '\t': *o++ = 't'; break;
			case '\b': *o++ = 'b'; break;
			case '\f': *o++ = 'f'; break;
			default:
				*o++ = 'u'; *o++ = '0'; *o++ = '0';
				*o++ = HEX[c >> 4]; *o++ = HEX[c & 15];
			}
			i++;
		} else {
			size_t k = utf8_len(s + i, n - i);
			if (k) {
				memcpy(o, s + i, k);
				o += k;
				i += k;
			} else {         /* backslashreplace's \xNN, its backslash escaped for JSON */
				*o++ = '\\'; *o++ = '\\'; *o++ = 'x';
				*o++ = HEX[c >> 4]; *o++ = HEX[c & 15];
				i++;
			}
		}
	}
	*o++ = '"';
	e->out_len = o - e->out;
}

static inline char *esc_x(char *o, unsigned v)
{
	*o++ = '\\'; *o++ = 'x';
	*o++ = HEX[(v >> 4) & 15]; *o++ = HEX[v & 15];
	return o;
}

/*
 * A name as text: escape.text_name() (terminal_safe of the surrogateescape
 * decoding).  Returns the characters written, as Python's len() counts
 * them (for padding).  4 bytes out per byte in, at most.
 */
static size_t put_text_name(struct fp_engine *e, const uint8_t *s, size_t n)
{
	char *o = e->out + e->out_len;
	size_t chars = 0, i = 0;
	while (i < n) {
		uint8_t c = s[i];
		char *before = o;
		if (c < 0x80) {
			if (c >= 0x20 && c != 0x7f && c != '\\') {
				*o++ = c;
			} else if (c == '\\') {
				*o++ = '\\'; *o++ = '\\';
			} else if (c == '\t') {
				*o++ = '\\'; *o++ = 't';
			} else if (c == '\n') {
				*o++ = '\\'; *o++ = 'n';
			} else if (c == '\r') {
				*o++ = '\\'; *o++ = 'r';
			} else {
				o = esc_x(o, c);
			}
			i++;
			chars += o - before;
			continue;
		}
		size_t k = utf8_len(s + i, n - i);
		if (!k) {                       /* surrogateescape's stand-in, shown as the byte */
			o = esc_x(o, c);
			i++;
			chars += 4;
			continue;
		}
		uint32_t cp;
		if (k == 2)
			cp = (c & 0x1F) << 6 | (s[i + 1] & 0x3F);
		else if (k == 3)
			cp = (c & 0x0F) << 12 | (s[i + 1] & 0x3F) << 6 | (s[i + 2] & 0x3F);
		else
			cp = (c & 0x07) << 18 | (s[i + 1] & 0x3F) << 12 | (s[i + 2] & 0x3F) << 6 | (s[i + 3] & 0x3F);
		if (cp <= 0x9F) {               /* C1 controls */
			o = esc_x(o, cp);
			chars += 4;
		} else if (cp == 0x061C || (cp >= 0x200B && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202E) ||
			   (cp >= 0x2060 && cp <= 0x2069) || cp == 0xFEFF) {
			*o++ = '\\'; *o++ = 'u';
			*o++ = HEX[cp >> 12]; *o++ = HEX[(cp >> 8) & 15];
			*o++ = HEX[(cp >> 4) & 15]; *o++ = HEX[cp & 15];
			chars += 6;
		} else {
			memcpy(o, s + i, k);
			o += k;
			chars += 1;
		}
		i += k;
	}
	e->out_len = o - e->out;
	return chars;
}

/* session/paths.py normalize(): '//', '.' and '..' collapsed lexically, for absolute names. */
static const uint8_t *normalize(const uint8_t *p, size_t n, uint8_t *tmp, size_t *out_n)
{
	*out_n = n;
	if (n == 0 || p[0] != '/')
		return p;
	int plain = n == 1 || p[n - 1] != '/';
	for (size_t i = 0; plain && i + 1 < n; i++)
		if (p[i] == '/' && (p[i + 1] == '/' || p[i + 1] == '.'))
			plain = 0;
	if (plain)
		return p;
	size_t len = 0, i = 0;
	while (i < n) {
		while (i < n && p[i] == '/')
			i++;
		size_t start = i;
		while (i < n && p[i] != '/')
			i++;
		size_t clen = i - start;
		if (clen == 0 || (clen == 1 && p[start] == '.'))
			continue;
		if (clen == 2 && p[start] == '.' && p[start + 1] == '.') {
			while (len > 0 && tmp[len - 1] != '/')
				len--;
			if (len > 0)
				len--;          /* the '/' before the component */
			continue;
		}
		tmp[len++] = '/';
		memcpy(tmp + len, p + start, clen);
		len += clen;
	}
	if (len == 0)
		tmp[len++] = '/';
	*out_n = len;
	return tmp;
}

/* --- tables -------------------------------------------------------------------- */

struct fp_engine *fp_new(int kind, int colour)
{
	struct fp_engine *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->kind = kind;
	e->colour = colour;
	e->cg = calloc(CG_SLOTS, sizeof(*e->cg));
	e->pids = calloc(PID_SLOTS, sizeof(*e->pids));
	e->clock_sec = INT64_MIN;
	if (!e->cg || !e->pids || reserve(e, 1 << 16)) {
		fp_free(e);
		return NULL;
	}
	return e;
}

void fp_clear_cgroups(struct fp_engine *e)
{
	for (int i = 0; i < CG_SLOTS; i++) {
		free(e->cg[i].text);
		e->cg[i].text = NULL;
		e->cg[i].state = 0;
	}
	e->cg_used = 0;
}

void fp_free(struct fp_engine *e)
{
	if (!e)
		return;
	if (e->cg)
		fp_clear_cgroups(e);
	free(e->cg);
	free(e->pids);
	for (int t = 0; t < 4; t++)
		for (int i = 0; i < FP_TABLE_SIZE; i++)
			free(e->tables[t][i].s);
	for (int i = 0; i < e->n_ops; i++) {
		free(e->ops[i].key);
		free(e->ops[i].arg);
	}
	free(e->out);
	free(e);
}

static char *copy(const char *s, size_t n)
{
	char *p = malloc(n + 1);
	if (p) {
		memcpy(p, s, n);
		p[n] = 0;
	}
	return p;
}

int fp_set_name(struct fp_engine *e, int table, int index, const char *name, size_t len)
{
	if (table < 0 || table > 3 || index < 0 || index >= FP_TABLE_SIZE)
		return -1;
	struct name *t = &e->tables[table][index];
	free(t->s);
	t->s = copy(name, len);
	t->len = len;
	if (!t->s)
		return -1;
	if (table == FP_T_EVENT && index >= e->n_events)
		e->n_events = index + 1;
	return 0;
}

int fp_add_op(struct fp_engine *e, int code, const char *key, size_t key_len, const char *arg, size_t arg_len,
	      int off, int size, int is_signed, uint32_t when_flags, uint64_t divisor, int as_float)
{
	if (e->n_ops >= MAX_OPS)
		return -1;
	if (code == FP_OP_NUMBER && (off < 0 || off + size > (int)FST_HDR_SIZE ||
				     (size != 1 && size != 2 && size != 4 && size != 8)))
		return -1;
	struct op *op = &e->ops[e->n_ops];
	op->code = code;
	op->key = copy(key, key_len);
	op->key_len = key_len;
	op->arg = copy(arg ? arg : "", arg ? arg_len : 0);
	op->arg_len = arg ? arg_len : 0;
	op->off = off;
	op->size = size;
	op->is_signed = is_signed;
	op->when_flags = when_flags;
	op->divisor = divisor;
	op->as_float = as_float;
	if (!op->key || !op->arg)
		return -1;
	e->n_ops++;
	return 0;
}

void fp_configure(struct fp_engine *e, double offset, int bytes, uint32_t bytes_ops, uint32_t no_bytes_flag,
		  uint32_t dir_flag, uint32_t timed_flag)
{
	e->offset = offset;
	e->bytes = bytes;
	e->bytes_ops = bytes_ops;
	e->no_bytes_flag = no_bytes_flag;
	e->dir_flag = dir_flag;
	e->timed_flag = timed_flag;
}

void fp_set_moves_bytes(struct fp_engine *e, int syscall)
{
	if (syscall >= 0 && syscall < FP_TABLE_SIZE)
		e->moves_bytes[syscall] = 1;
}

static inline uint32_t cg_hash(uint64_t id)
{
	id *= 0x9E3779B97F4A7C15ULL;
	return (uint32_t)(id >> 40) & (CG_SLOTS - 1);
}

static struct cg_slot *cg_find(struct fp_engine *e, uint64_t id)
{
	for (uint32_t i = cg_hash(id), k = 0; k < CG_SLOTS; i = (i + 1) & (CG_SLOTS - 1), k++) {
		struct cg_slot *s = &e->cg[i];
		if (s->state == 0)
			return NULL;
		if (s->state == 1 && s->id == id)
			return s;
	}
	return NULL;
}

void fp_drop_cgroup(struct fp_engine *e, uint64_t id)
{
	struct cg_slot *s = cg_find(e, id);
	if (s) {
		free(s->text);
		s->text = NULL;
		s->state = 2;
	}
}

int fp_set_cgroup(struct fp_engine *e, uint64_t id, int wanted, const char *text, size_t len)
{
	fp_drop_cgroup(e, id);
	if (e->cg_used >= CG_MAX)
		fp_clear_cgroups(e);
	char *t = copy(text, len);
	if (!t)
		return -1;
	uint32_t i = cg_hash(id);
	while (e->cg[i].state == 1)
		i = (i + 1) & (CG_SLOTS - 1);
	struct cg_slot *s = &e->cg[i];
	if (s->state == 0)
		e->cg_used++;
	s->id = id;
	s->text = t;
	s->len = len;
	s->wanted = wanted;
	s->state = 1;
	return 0;
}

void fp_set_ppid(struct fp_engine *e, uint32_t pid, int64_t ppid)
{
	struct pid_slot *s = &e->pids[pid & (PID_SLOTS - 1)];
	s->pid = pid;
	s->ppid = ppid;
	s->valid = 1;
}

/* --- one record ------------------------------------------------------------------ */

struct names {
	const uint8_t *n1, *n2;
	size_t l1, l2;
	int has1, has2;
};

static const uint8_t *raw_name(const struct fst_event *ev, size_t start, size_t len, size_t *out_n)
{
	const uint8_t *p = (const uint8_t *)ev + FST_HDR_SIZE + start;
	/* len counts the NUL the kernel copied; a name cut at PATH_MAX has none */
	*out_n = p[len - 1] == 0 ? len - 1 : len;
	return p;
}

static int64_t moved_bytes(const struct fp_engine *e, const struct fst_event *ev)
{
	if (e->bytes && ev->op < 32 && (e->bytes_ops >> ev->op & 1) && ev->syscall < FP_TABLE_SIZE &&
	    e->moves_bytes[ev->syscall] && ev->ret >= 0 && !(ev->flags & e->no_bytes_flag))
		return ev->ret;
	return -1;
}

static uint64_t header_number(const struct fst_event *ev, const struct op *op, int *negative)
{
	const uint8_t *p = (const uint8_t *)ev + op->off;
	uint64_t v = 0;
	*negative = 0;
	switch (op->size) {
	case 1: { uint8_t x; memcpy(&x, p, 1); v = op->is_signed ? (uint64_t)(int64_t)(int8_t)x : x; break; }
	case 2: { uint16_t x; memcpy(&x, p, 2); v = op->is_signed ? (uint64_t)(int64_t)(int16_t)x : x; break; }
	case 4: { uint32_t x; memcpy(&x, p, 4); v = op->is_signed ? (uint64_t)(int64_t)(int32_t)x : x; break; }
	default: memcpy(&v, p, 8);
	}
	if (op->is_signed && (int64_t)v < 0)
		*negative = 1;
	return v;
}

static void put_errno(struct fp_engine *e, int64_t ret)
{
	uint64_t err = -(uint64_t)ret;
	if (err < FP_TABLE_SIZE && e->tables[FP_T_ERRNO][err].s) {
		put(e, e->tables[FP_T_ERRNO][err].s, e->tables[FP_T_ERRNO][err].len);
	} else {
		putc_(e, 'E');
		put_u64(e, err);
	}
}

static void put_syscall(struct fp_engine *e, uint32_t nr)
{
	if (nr < FP_TABLE_SIZE && e->tables[FP_T_SYSCALL][nr].s)
		put(e, e->tables[FP_T_SYSCALL][nr].s, e->tables[FP_T_SYSCALL][nr].len);
	else
		put_u64(e, nr);
}

static void put_json_name(struct fp_engine *e, int has, const uint8_t *p, size_t n, uint8_t *tmp)
{
	if (!has) {
		PUTS(e, "null");
		return;
	}
	size_t m;
	const uint8_t *q = normalize(p, n, tmp, &m);
	put_json_str(e, q, m);
}

static void format_json(struct fp_engine *e, const struct fst_event *ev, const struct names *nm,
			const struct cg_slot *cg, int64_t ppid)
{
	for (int i = 0; i < e->n_ops; i++) {
		const struct op *op = &e->ops[i];
		put(e, op->key, op->key_len);
		switch (op->code) {
		case FP_OP_LITERAL:
			put(e, op->arg, op->arg_len);
			break;
		case FP_OP_TS:
			e->out_len += fp_fixed6(e->offset + (double)ev->ts_ns / 1e9, e->out + e->out_len);
			break;
		case FP_OP_EVENT:
			putc_(e, '"');
			put(e, e->tables[FP_T_EVENT][ev->op].s, e->tables[FP_T_EVENT][ev->op].len);
			putc_(e, '"');
			break;
		case FP_OP_DIR:
			if (ev->flags & e->dir_flag)
				PUTS(e, "true");
			else
				PUTS(e, "false");
			break;
		case FP_OP_NAME1:
			put_json_name(e, nm->has1, nm->n1, nm->l1, e->scratch[0]);
			break;
		case FP_OP_NAME2:
			put_json_name(e, nm->has2, nm->n2, nm->l2, e->scratch[1]);
			break;
		case FP_OP_NUMBER: {
			if (op->when_flags && (ev->flags & op->when_flags) != op->when_flags) {
				PUTS(e, "null");
				break;
			}
			int neg;
			uint64_t v = header_number(ev, op, &neg);
			if (op->divisor > 1 && op->as_float) {
				double d = neg ? (double)(int64_t)v : (double)v;
				e->out_len += fp_repr(d / (double)op->divisor, e->out + e->out_len);
			} else if (op->divisor > 1) {          /* Python's //: floor */
				if (neg) {
					uint64_t m = -(uint64_t)v, q = m / op->divisor;
					put_s64(e, -(int64_t)(q + (m % op->divisor != 0)));
				} else {
					put_u64(e, v / op->divisor);
				}
			} else if (neg) {
				put_s64(e, (int64_t)v);
			} else {
				put_u64(e, v);
			}
			break;
		}
		case FP_OP_PPID:
			if (ppid < 0)
				PUTS(e, "null");
			else
				put_u64(e, ppid);
			break;
		case FP_OP_COMM: {
			size_t n = strnlen(ev->comm, FST_COMM_LEN);
			put_json_str(e, (const uint8_t *)ev->comm, n);
			break;
		}
		case FP_OP_CGROUP:
			put(e, cg->text, cg->len);
			break;
		case FP_OP_ERROR:
			if (ev->ret >= 0) {
				PUTS(e, "null");
			} else {
				putc_(e, '"');
				put_errno(e, ev->ret);
				putc_(e, '"');
			}
			break;
		case FP_OP_SYSCALL:
			putc_(e, '"');
			put_syscall(e, ev->syscall);
			putc_(e, '"');
			break;
		case FP_OP_BYTES: {
			int64_t b = moved_bytes(e, ev);
			if (b < 0)
				PUTS(e, "null");
			else
				put_u64(e, b);
			break;
		}
		}
	}
	PUTS(e, "}\n");
}

/* views/text.py human_bytes() */
static void put_human_bytes(struct fp_engine *e, uint64_t b)
{
	static const char *units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
	char buf[64];
	int n = 0;
	if (b < 1024) {
		n = snprintf(buf, sizeof(buf), "%llu B", (unsigned long long)b);
	} else {
		double v = (double)b;
		for (int u = 0; u < 5; u++) {
			v /= 1024;
			if (v < 99.95 || u == 4) {
				n = snprintf(buf, sizeof(buf), "%.1f %s", v, units[u]);
				break;
			}
			if (v < 1023.5) {
				n = snprintf(buf, sizeof(buf), "%.0f %s", nearbyint(v), units[u]);
				break;
			}
		}
	}
	put(e, buf, n);
}

/* views/text.py human_time() */
static void put_human_time(struct fp_engine *e, uint64_t ns)
{
	static const char *units[] = {"ns", "us", "ms"};
	static const double scales[] = {1, 1e3, 1e6};
	char buf[64];
	int n;
	for (int u = 0; u < 3; u++) {
		if ((double)ns < 999.5 * scales[u]) {
			double v = (double)ns / scales[u];
			if (v >= 99.95 || u == 0)
				n = snprintf(buf, sizeof(buf), "%.0f %s", nearbyint(v), units[u]);
			else
				n = snprintf(buf, sizeof(buf), "%.1f %s", v, units[u]);
			put(e, buf, n);
			return;
		}
	}
	double s = (double)ns / 1e9;
	if (s < 9.995)
		n = snprintf(buf, sizeof(buf), "%.2f s", s);
	else if (s < 99.95)
		n = snprintf(buf, sizeof(buf), "%.1f s", s);
	else
		n = snprintf(buf, sizeof(buf), "%.0f s", nearbyint(s));
	put(e, buf, n);
}

static void put_text_path(struct fp_engine *e, const uint8_t *p, size_t n, uint8_t *tmp)
{
	size_t m;
	const uint8_t *q = normalize(p, n, tmp, &m);
	put_text_name(e, q, m);
}

static void format_text(struct fp_engine *e, const struct fst_event *ev, const struct names *nm,
			const struct cg_slot *cg)
{
	double ts = e->offset + (double)ev->ts_ns / 1e9;
	int64_t sec = (int64_t)ts;
	long micro = (long)((ts - (double)sec) * 1e6);
	if (sec != e->clock_sec) {
		time_t t = sec;
		struct tm tm;
		e->clock_len = localtime_r(&t, &tm) ? strftime(e->clock, sizeof(e->clock), "%H:%M:%S", &tm) : 0;
		e->clock_sec = sec;
	}
	put(e, e->clock, e->clock_len);
	if (micro >= 0 && micro < 1000000) {
		char *o = e->out + e->out_len;
		*o++ = '.';
		for (int i = 6; i >= 1; i--) {
			o[i - 1] = '0' + micro % 10;
			micro /= 10;
		}
		e->out_len += 7;
	} else {
		e->out_len += sprintf(e->out + e->out_len, ".%06ld", micro);
	}
	putc_(e, ' ');
	put(e, cg->text, cg->len);
	putc_(e, ' ');

	/* who: comm[pid], padded to WHO_WIDTH characters */
	size_t chars = put_text_name(e, (const uint8_t *)ev->comm, strnlen(ev->comm, FST_COMM_LEN));
	size_t before = e->out_len;
	putc_(e, '[');
	put_u64(e, ev->pid);
	putc_(e, ']');
	chars += e->out_len - before;
	for (; chars < WHO_WIDTH; chars++)
		putc_(e, ' ');
	putc_(e, ' ');

	/* what: the event, / for a directory, padded to WHAT_WIDTH */
	const struct name *ename = &e->tables[FP_T_EVENT][ev->op];
	if (e->colour) {
		const struct name *col = &e->tables[FP_T_COLOUR][ev->op];
		PUTS(e, "\x1b[");
		put(e, col->s, col->len);
		putc_(e, 'm');
	}
	put(e, ename->s, ename->len);
	size_t w = ename->len;
	if (ev->flags & e->dir_flag) {
		putc_(e, '/');
		w++;
	}
	for (; w < WHAT_WIDTH; w++)
		putc_(e, ' ');
	if (e->colour)
		PUTS(e, "\x1b[0m");
	putc_(e, ' ');

	size_t start = e->out_len;
	if (nm->has1)
		put_text_path(e, nm->n1, nm->l1, e->scratch[0]);
	if (e->out_len == start)
		putc_(e, '?');
	if (nm->has2) {
		PUTS(e, " -> ");
		put_text_path(e, nm->n2, nm->l2, e->scratch[1]);
	}
	int64_t b = moved_bytes(e, ev);
	int timed = (ev->flags & e->timed_flag) != 0;
	if (b >= 0 || timed) {              /* "  (4.0 KiB, 12.3 us)" */
		PUTS(e, "  (");
		if (b >= 0)
			put_human_bytes(e, b);
		if (b >= 0 && timed)
			PUTS(e, ", ");
		if (timed)
			put_human_time(e, ev->lat_ns);
		putc_(e, ')');
	}
	if (ev->ret < 0) {
		PUTS(e, "  ");
		if (e->colour)
			PUTS(e, "\x1b[31m");
		put_errno(e, ev->ret);
		if (e->colour)
			PUTS(e, "\x1b[0m");
	}
	putc_(e, '\n');
}

/* 0: formatted or not wanted; FP_NEED: Python's (e->why says why); -1: out of memory */
int fp_format(struct fp_engine *e, const uint8_t *rec, size_t size)
{
	const struct fst_event *ev = (const struct fst_event *)rec;
	if (size < FST_HDR_SIZE || ev->type != FST_REC_FILE || ev->op >= (uint32_t)e->n_events ||
	    FST_HDR_SIZE + (size_t)ev->len1 + ev->len2 > size || !e->tables[FP_T_EVENT][ev->op].s) {
		e->why = FP_WHY_RECORD;
		return FP_NEED;
	}
	const struct cg_slot *cg = cg_find(e, ev->cgroup_id);
	if (!cg) {
		e->why = FP_WHY_CGROUP;
		e->need_cgroup = ev->cgroup_id;
		return FP_NEED;
	}
	if (!cg->wanted)
		return 0;
	const struct pid_slot *ps = &e->pids[ev->pid & (PID_SLOTS - 1)];
	if (!ps->valid || ps->pid != ev->pid) {
		e->why = FP_WHY_PPID;
		e->need_pid = ev->pid;
		return FP_NEED;
	}
	struct names nm = {0};
	nm.has1 = ev->len1 != 0;
	nm.has2 = ev->len2 != 0;
	if (nm.has1)
		nm.n1 = raw_name(ev, 0, ev->len1, &nm.l1);
	if (nm.has2)
		nm.n2 = raw_name(ev, ev->len1, ev->len2, &nm.l2);
	/* the most a record can take: escapes (6 bytes per byte), the cgroup's text, numbers, keys */
	size_t bound = 6 * ((size_t)ev->len1 + ev->len2 + FST_COMM_LEN) + cg->len + 1024;
	for (int i = 0; i < e->n_ops; i++)
		bound += e->ops[i].key_len + e->ops[i].arg_len + 64;
	if (reserve(e, bound))
		return -1;
	if (e->kind == FP_JSON)
		format_json(e, ev, &nm, cg, ps->ppid);
	else
		format_text(e, ev, &nm, cg);
	e->events++;
	return 0;
}

/* --- the ring ---------------------------------------------------------------------- */

uint64_t fp_producer(const struct fp_ring *r)
{
	return __atomic_load_n(r->producer, __ATOMIC_ACQUIRE);
}

/*
 * Consume records up to limit (a producer position read before, so a
 * producer as fast as this reader cannot keep it here), giving the space
 * back as it goes.  Returns FP_DONE, FP_NEED (the record at the consumer
 * position is Python's) or FP_FULL; -1 when out of memory.
 */
int fp_drain(struct fp_engine *e, struct fp_ring *r, uint64_t limit)
{
	uint64_t cons = __atomic_load_n(r->consumer, __ATOMIC_RELAXED);
	unsigned n = 0;
	int rc = FP_DONE;
	while (cons < limit) {
		if (e->out_len >= OUT_SOFT) {
			rc = FP_FULL;
			break;
		}
		const uint8_t *hdr = r->data + (cons & r->mask);
		uint32_t len = __atomic_load_n((const uint32_t *)hdr, __ATOMIC_ACQUIRE);
		/* reserved, not committed yet: a BPF program commits before it returns, so wait a little
		 * (about a millisecond at most) rather than leave it, and what follows, to the next poll,
		 * which the last poll of a run does not have */
		for (int spins = 0; (len & RB_BUSY) && spins < BUSY_SPINS; spins++) {
			__builtin_ia32_pause();
			len = __atomic_load_n((const uint32_t *)hdr, __ATOMIC_ACQUIRE);
		}
		if (len & RB_BUSY)
			break;
		uint32_t size = len & ~(RB_BUSY | RB_DISCARD);
		if (!(len & RB_DISCARD)) {
			int f = fp_format(e, hdr + RB_HDR, size);
			if (f) {
				e->need_off = (cons & r->mask) + RB_HDR;
				e->need_len = size;
				rc = f;
				break;
			}
		}
		cons += (size + RB_HDR + 7) & ~7ULL;
		if ((++n & 255) == 0)
			__atomic_store_n(r->consumer, cons, __ATOMIC_RELEASE);
	}
	__atomic_store_n(r->consumer, cons, __ATOMIC_RELEASE);
	return rc;
}

/* Consume the record at the consumer position (Python has handled it). */
void fp_skip(struct fp_engine *e, struct fp_ring *r)
{
	(void)e;
	uint64_t cons = __atomic_load_n(r->consumer, __ATOMIC_RELAXED);
	uint32_t len = __atomic_load_n((const uint32_t *)(r->data + (cons & r->mask)), __ATOMIC_ACQUIRE);
	if (len & RB_BUSY)
		return;
	uint32_t size = len & ~(RB_BUSY | RB_DISCARD);
	__atomic_store_n(r->consumer, cons + ((size + RB_HDR + 7) & ~7ULL), __ATOMIC_RELEASE);
}

char *fp_out(struct fp_engine *e) { return e->out; }
size_t fp_out_len(struct fp_engine *e) { return e->out_len; }
void fp_out_clear(struct fp_engine *e) { e->out_len = 0; }
uint64_t fp_events(struct fp_engine *e) { return e->events; }
int fp_why(struct fp_engine *e) { return e->why; }
uint64_t fp_need_off(struct fp_engine *e) { return e->need_off; }
uint32_t fp_need_len(struct fp_engine *e) { return e->need_len; }
uint64_t fp_need_cgroup(struct fp_engine *e) { return e->need_cgroup; }
uint32_t fp_need_pid(struct fp_engine *e) { return e->need_pid; }

size_t fp_header_size(void)
{
	return FST_HDR_SIZE;
}

#define FIELD(f) if (!strcmp(field, #f)) return (int)offsetof(struct fst_event, f)
int fp_header_offset(const char *field)
{
	FIELD(ts_ns); FIELD(cgroup_id); FIELD(file_id); FIELD(base_id); FIELD(base_id2); FIELD(ret); FIELD(lat_ns);
	FIELD(type); FIELD(op); FIELD(pid); FIELD(tid); FIELD(uid); FIELD(syscall); FIELD(flags);
	FIELD(oflags); FIELD(fd); FIELD(dirfd); FIELD(dirfd2); FIELD(len1); FIELD(len2); FIELD(comm);
	return -1;
}
