/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fstb-fileops WORKDIR N: the "plain" and "cgroup" workloads.
 *
 * N rounds of: create a file, write 4 KiB, close, rename, stat, open, read,
 * close, unlink, all relative to WORKDIR.  Prints the syscalls it made as
 * JSON (counted.h).  For "cgroup" the harness starts it inside a cgroup.
 */
#include "counted.h"

int main(int argc, char **argv)
{
	static char block[4096];
	struct stat st;

	if (argc != 3) {
		fprintf(stderr, "usage: %s WORKDIR N\n", argv[0]);
		return 2;
	}
	long rounds = parse_count(argv[2], "N");

	counted_init();
	memset(block, 'x', sizeof(block));
	int dfd = c_openat(AT_FDCWD, argv[1], O_RDONLY | O_DIRECTORY, 0);

	double start = now();
	for (long i = 0; i < rounds; i++) {
		int fd = c_openat(dfd, "a", O_WRONLY | O_CREAT | O_EXCL, 0644);
		c_write(fd, block, sizeof(block));
		c_close(fd);
		c_renameat(dfd, "a", "b");
		c_fstatat(dfd, "b", &st, 0);
		fd = c_openat(dfd, "b", O_RDONLY, 0);
		c_read(fd, block, sizeof(block));
		c_close(fd);
		if (c_unlinkat(dfd, "b", 0))
			die("unlinkat", "b");
	}
	double seconds = now() - start;

	c_close(dfd);
	report("fileops", seconds, "");
	return 0;
}
