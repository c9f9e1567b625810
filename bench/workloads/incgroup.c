/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fstb-incgroup CGROUP PROGRAM [ARG...]: run PROGRAM born into CGROUP.
 *
 * The child is made with clone3(CLONE_INTO_CGROUP) and execs at once, so
 * everything PROGRAM does happens inside CGROUP, and nothing else happens
 * in that process (moving a running process would add its own file
 * operations, a write to cgroup.procs, to the workload's).  Exits with
 * PROGRAM's status.  Not a workload itself: nothing here is counted.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int status;

	if (argc < 3) {
		fprintf(stderr, "usage: %s CGROUP PROGRAM [ARG...]\n", argv[0]);
		return 2;
	}
	int cgfd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cgfd < 0) {
		fprintf(stderr, "%s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	struct clone_args args = {
		.flags = CLONE_INTO_CGROUP,
		.exit_signal = SIGCHLD,
		.cgroup = cgfd,
	};
	pid_t pid = syscall(SYS_clone3, &args, sizeof(args));
	if (pid < 0) {
		fprintf(stderr, "clone3 into %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	if (pid == 0) {
		execv(argv[2], argv + 2);
		fprintf(stderr, "%s: %s\n", argv[2], strerror(errno));
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid)
		return 1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
