package pause

/*
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig) { _exit(0); }

// As PID 1 of a pod whose PID namespace is shared, pause inherits orphans
// and must reap them.
static void on_child(int sig) {
	int saved = errno;
	while (waitpid(-1, NULL, WNOHANG) > 0) {
	}
	errno = saved;
}

// drop_startup_pages unmaps the read-only pages of the binary that libc's
// start-up touched (the kernel maps them in 64 KiB fault-around chunks).
// Only clean file pages are dropped: a mapping with any page copied on
// write (RELRO after relocation) shows Anonymous > 0 in smaps and is kept,
// since dropping it would bring back unrelocated bytes.
static void drop_startup_pages(void) {
	static char buf[65536];
	int fd = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		return;
	}
	ssize_t n, len = 0;
	while (len < (ssize_t)sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0) {
		len += n;
	}
	close(fd);
	buf[len] = 0;
	unsigned long lo = 0, hi = 0;
	int candidate = 0;
	for (char *line = buf; line && *line; ) {
		char *next = strchr(line, '\n');
		if (next) {
			*next++ = 0;
		}
		char *end;
		unsigned long a = strtoul(line, &end, 16);
		if (end != line && *end == '-') {
			unsigned long b = strtoul(end + 1, &end, 16);
			// A new mapping: "r--p" or "r-xp" backed by a file.
			candidate = b > a && end[0] == ' ' && end[1] == 'r' && end[2] == '-' && end[4] == 'p' && strchr(end, '/') != NULL;
			lo = a;
			hi = b;
		} else if (candidate && strncmp(line, "Anonymous:", 10) == 0) {
			if (strtoul(line + 10, NULL, 10) == 0) {
				madvise((void *)lo, hi - lo, MADV_DONTNEED);
			}
			candidate = 0;
		}
		line = next;
	}
}

__attribute__((constructor)) static void cri_runtimed_pause(int argc, char **argv) {
	if (argc < 2 || argv[1] == NULL || strcmp(argv[1], "pause") != 0) {
		return;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_child;
	sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
	sigaction(SIGCHLD, &sa, NULL);
	drop_startup_pages();
	for (;;) {
		pause();
	}
}
*/
import "C"

// Arg is the argument that selects the pause mode.
const Arg = "pause"

// ContainerPath is where the binary is mounted inside the pause rootfs.
const ContainerPath = "/pause"
