package pause

/*
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

// Older kernel headers lack these (Linux 6.7, 5.11).
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

static void on_term(int sig) { _exit(0); }

// As PID 1 of a pod whose PID namespace is shared, pause inherits orphans
// and must reap them.
static void on_child(int sig) {
	int saved = errno;
	while (waitpid(-1, NULL, WNOHANG) > 0) {
	}
	errno = saved;
}

// page_by_page_fd returns a userfaultfd on which mappings registered in
// write-protect mode fault in one page at a time, or -1. As
// exepages.DisableFaultAround in Go: a userfaultfd registration is the
// only per-mapping switch for the kernel's fault-around (64 KiB, and whole
// large folios of the page cache, for each page touched); with
// UFFD_FEATURE_WP_ASYNC (Linux 6.7) the kernel resolves write-protect
// faults itself, so nothing ever reads it. It stays open for the
// process's life: closing it would undo the registrations.
static int page_by_page_fd(void) {
	int fd = syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	if (fd < 0) {
		return -1;
	}
	struct uffdio_api api;
	memset(&api, 0, sizeof api);
	api.api = UFFD_API;
	api.features = UFFD_FEATURE_WP_ASYNC;
	if (ioctl(fd, UFFDIO_API, &api) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

// drop_startup_pages unmaps the read-only pages of the binary that libc's
// start-up touched, after making them fault back one page at a time
// (page_by_page_fd): the few pages pause touches afterwards (this loop's
// end, pause, the signal handlers) would otherwise map hundreds of
// KiB of the daemon's binary. Only clean file pages are dropped: a
// mapping with any page copied on write (RELRO after relocation) shows
// Anonymous > 0 in smaps and is kept, since dropping it would bring back
// unrelocated bytes.
static void drop_startup_pages(void) {
	static char buf[65536];
	int uffd = page_by_page_fd();
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
				if (uffd >= 0) {
					struct uffdio_register reg;
					memset(&reg, 0, sizeof reg);
					reg.range.start = lo;
					reg.range.len = hi - lo;
					reg.mode = UFFDIO_REGISTER_MODE_WP;
					ioctl(uffd, UFFDIO_REGISTER, &reg);
				}
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
