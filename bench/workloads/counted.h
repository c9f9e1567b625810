/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Counted file syscalls for the benchmark workloads.
 *
 * Every file syscall a workload makes goes through one of these wrappers,
 * which counts it under strace's name for it and exits on failure, so the
 * workload can report exactly what a tracer should have seen.  The counters
 * live in a shared anonymous mapping: children made with fork or clone3
 * (without CLONE_VM) add to the same totals the parent reports.
 *
 * The binaries are linked statically so the dynamic loader adds no opens.
 */
#ifndef COUNTED_H
#define COUNTED_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum counted_op {
	C_OPENAT,
	C_CLOSE,
	C_READ,
	C_WRITE,
	C_RENAMEAT,
	C_NEWFSTATAT,
	C_UNLINKAT,
	C_MKDIRAT,
	C_COUNT
};

/* The names strace -c prints for these syscalls on x86_64. */
static const char *const counted_names[C_COUNT] = {
	"openat", "close", "read", "write", "renameat", "newfstatat", "unlinkat", "mkdirat",
};

static unsigned long *counted;     /* calls, by enum counted_op */
static unsigned long *failed;      /* calls that returned an error */

static inline void die(const char *what, const char *arg)
{
	fprintf(stderr, "%s %s: %s\n", what, arg ? arg : "", strerror(errno));
	exit(1);
}

static inline void counted_init(void)
{
	counted = mmap(NULL, 2 * C_COUNT * sizeof(*counted), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (counted == MAP_FAILED)
		die("mmap", "counters");
	failed = counted + C_COUNT;
}

static inline int c_openat(int dfd, const char *name, int flags, mode_t mode)
{
	counted[C_OPENAT]++;
	int fd = openat(dfd, name, flags, mode);
	if (fd < 0)
		die("openat", name);
	return fd;
}

static inline void c_close(int fd)
{
	counted[C_CLOSE]++;
	if (close(fd))
		die("close", NULL);
}

static inline void c_read(int fd, void *buf, size_t len)
{
	counted[C_READ]++;
	if (read(fd, buf, len) < 0)
		die("read", NULL);
}

static inline void c_write(int fd, const void *buf, size_t len)
{
	counted[C_WRITE]++;
	if (write(fd, buf, len) != (ssize_t)len)
		die("write", NULL);
}

static inline void c_renameat(int dfd, const char *from, const char *to)
{
	counted[C_RENAMEAT]++;
	if (renameat(dfd, from, dfd, to))
		die("renameat", from);
}

static inline void c_fstatat(int dfd, const char *name, struct stat *st, int flags)
{
	counted[C_NEWFSTATAT]++;
	if (fstatat(dfd, name, st, flags))
		die("newfstatat", name);
}

/* May fail, with EBUSY for a cgroup whose last task is still exiting: the caller decides. */
static inline int c_unlinkat(int dfd, const char *name, int flags)
{
	counted[C_UNLINKAT]++;
	if (unlinkat(dfd, name, flags)) {
		failed[C_UNLINKAT]++;
		return -1;
	}
	return 0;
}

static inline void c_mkdirat(int dfd, const char *name, mode_t mode)
{
	counted[C_MKDIRAT]++;
	if (mkdirat(dfd, name, mode))
		die("mkdirat", name);
}

static inline double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline long parse_count(const char *text, const char *what)
{
	char *end;
	long n = strtol(text, &end, 10);
	if (*end || n <= 0) {
		fprintf(stderr, "bad %s: %s\n", what, text);
		exit(2);
	}
	return n;
}

/* Append counts as a JSON object {"name":n,...} (zero counts left out) to buf. */
static inline size_t format_counts(char *buf, size_t cap, const unsigned long *counts)
{
	size_t n = snprintf(buf, cap, "{");
	const char *sep = "";

	for (int i = 0; i < C_COUNT; i++) {
		if (!counts[i])
			continue;
		n += snprintf(buf + n, n < cap ? cap - n : 0, "%s\"%s\":%lu", sep, counted_names[i], counts[i]);
		sep = ",";
	}
	return n + snprintf(buf + n, n < cap ? cap - n : 0, "}");
}

/*
 * The report: one JSON object written to /dev/stdout, which the workload
 * opens itself so that every fd it touches is one it opened (fstrace follows
 * reads, writes and closes only on those).  The open, write and close of the
 * report are counted before they happen, as the report must include them.
 * extra is a JSON fragment (members with a leading comma) or "".
 */
static inline void report(const char *workload, double seconds, const char *extra)
{
	static char buf[1 << 20];
	size_t n;

	counted[C_OPENAT]++;
	counted[C_WRITE]++;
	counted[C_CLOSE]++;
	n = snprintf(buf, sizeof(buf), "{\"workload\":\"%s\",\"pid\":%d,\"seconds\":%.6f,\"syscalls\":",
		     workload, getpid(), seconds);
	n += format_counts(buf + n, sizeof(buf) - n, counted);
	n += snprintf(buf + n, sizeof(buf) - n, ",\"failed\":");
	n += format_counts(buf + n, sizeof(buf) - n, failed);
	n += snprintf(buf + n, sizeof(buf) - n, "%s}\n", extra);
	if (n >= sizeof(buf)) {
		fprintf(stderr, "report too long\n");
		exit(1);
	}
	int fd = openat(AT_FDCWD, "/dev/stdout", O_WRONLY);
	if (fd < 0 || write(fd, buf, n) != (ssize_t)n || close(fd))
		die("report", "/dev/stdout");
}

#endif /* COUNTED_H */
