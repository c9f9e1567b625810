/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fstb-rate WORKDIR RATE SECONDS: the throughput-ceiling generator.
 *
 * Opens and closes WORKDIR/f (two traced syscalls, an open and a
 * close_nowrite event) RATE times per second for SECONDS, paced against the
 * monotonic clock in 100 us steps, and reports the rate it reached: under a
 * slow tracer the generator itself may fall behind.
 */
#include "counted.h"

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s WORKDIR RATE SECONDS\n", argv[0]);
		return 2;
	}
	long rate = parse_count(argv[2], "RATE");
	long seconds = parse_count(argv[3], "SECONDS");
	const struct timespec step = {0, 100000};
	char extra[64];
	long done = 0;

	counted_init();
	int dfd = c_openat(AT_FDCWD, argv[1], O_RDONLY | O_DIRECTORY, 0);
	c_close(c_openat(dfd, "f", O_WRONLY | O_CREAT, 0644));

	double start = now(), elapsed;
	while ((elapsed = now() - start) < seconds) {
		long due = elapsed * rate;
		if (done >= due) {
			nanosleep(&step, NULL);
			continue;
		}
		for (; done < due; done++)
			c_close(c_openat(dfd, "f", O_RDONLY, 0));
	}
	elapsed = now() - start;

	if (c_unlinkat(dfd, "f", 0))
		die("unlinkat", "f");
	c_close(dfd);
	snprintf(extra, sizeof(extra), ",\"ops\":%ld,\"rate\":%.0f", done, done / elapsed);
	report("rate", elapsed, extra);
	return 0;
}
