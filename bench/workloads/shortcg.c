/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fstb-shortcg WORKDIR M PARENT: the "shortcg" workload.
 *
 * M times: make the cgroup PARENT/c<i>, start a child born into it with
 * clone3(CLONE_INTO_CGROUP), let the child do ten file operations in WORKDIR,
 * wait for it and remove the cgroup at once.  Reports the syscalls made
 * (parent and children), those made by the children alone, and per cgroup
 * its directory, id (inode number) and the child's pid.
 */
#include "counted.h"

#include <linux/sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

/* The ten operations of child i, on names of its own. */
static void child_ops(int wfd, long i)
{
	char dir[32], file[48], moved[48], buf[64];

	snprintf(dir, sizeof(dir), "d%ld", i);
	snprintf(file, sizeof(file), "%s/f", dir);
	snprintf(moved, sizeof(moved), "%s/g", dir);
	c_mkdirat(wfd, dir, 0755);
	int fd = c_openat(wfd, file, O_WRONLY | O_CREAT | O_EXCL, 0644);
	c_write(fd, dir, strlen(dir));
	c_close(fd);
	c_renameat(wfd, file, moved);
	fd = c_openat(wfd, moved, O_RDONLY, 0);
	c_read(fd, buf, sizeof(buf));
	c_close(fd);
	if (c_unlinkat(wfd, moved, 0))
		die("unlinkat", moved);
	if (c_unlinkat(wfd, dir, AT_REMOVEDIR))
		die("unlinkat", dir);
}

static pid_t clone_into(int cgfd)
{
	struct clone_args args = {
		.flags = CLONE_INTO_CGROUP,
		.exit_signal = SIGCHLD,
		.cgroup = cgfd,
	};
	return syscall(SYS_clone3, &args, sizeof(args));
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s WORKDIR M PARENT\n", argv[0]);
		return 2;
	}
	long m = parse_count(argv[2], "M");
	const char *parent = argv[3];
	size_t cap = 512 + m * (strlen(parent) + 96);
	char *extra = malloc(cap);
	size_t n = 0;
	unsigned long before[C_COUNT], by_children[C_COUNT] = {0};
	struct stat st;

	if (!extra)
		die("malloc", NULL);
	counted_init();
	int wfd = c_openat(AT_FDCWD, argv[1], O_RDONLY | O_DIRECTORY, 0);
	int pfd = c_openat(AT_FDCWD, parent, O_RDONLY | O_DIRECTORY, 0);
	n += snprintf(extra + n, cap - n, ",\"cgroups\":[");

	double start = now();
	for (long i = 0; i < m; i++) {
		char name[32];
		int status;

		snprintf(name, sizeof(name), "c%ld", i);
		c_mkdirat(pfd, name, 0755);
		int cgfd = c_openat(pfd, name, O_RDONLY | O_DIRECTORY, 0);
		c_fstatat(cgfd, "", &st, AT_EMPTY_PATH);
		memcpy(before, counted, sizeof(before));
		pid_t pid = clone_into(cgfd);
		if (pid < 0)
			die("clone3", name);
		if (pid == 0) {
			child_ops(wfd, i);
			_exit(0);
		}
		if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
			die("child", name);
		for (int k = 0; k < C_COUNT; k++)
			by_children[k] += counted[k] - before[k];
		c_close(cgfd);
		while (c_unlinkat(pfd, name, AT_REMOVEDIR))
			if (errno != EBUSY)
				die("unlinkat", name);
		n += snprintf(extra + n, cap - n, "%s{\"dir\":\"%s/%s\",\"id\":%llu,\"pid\":%d}",
			      i ? "," : "", parent, name, (unsigned long long)st.st_ino, pid);
	}
	double seconds = now() - start;

	n += snprintf(extra + n, cap - n, "],\"child_syscalls\":");
	n += format_counts(extra + n, cap - n, by_children);
	c_close(pfd);
	c_close(wfd);
	report("shortcg", seconds, extra);
	return 0;
}
