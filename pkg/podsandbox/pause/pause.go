package pause

/*
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
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
static void drop_startup_pages(int fd) {
	static char buf[65536];
	int uffd = page_by_page_fd();
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

// ---- The confined start (runtime.sandbox_start = "shim") ----
//
// The shim starts pause itself, without an OCI runtime: it clones it into
// the pod's new namespaces (mount, pid, ipc, uts; net and user where the
// pod has its own) with a SOCK_SEQPACKET socket as SYNC_FD (which is how
// pause knows: runc leaves it nothing beyond stdio) and the pause binary
// as fd EXE_FD, puts it in its cgroup and sets its oom_score_adj, then
// sends the options on SYNC_FD, NUL-separated. The arguments stay those
// of a runc-run pause ("/pause pause"): the pod's containers see them as
// their pid 1, and host paths have no business there.
// From there pause confines itself as runc would confine it, or tighter:
// it joins the pod's network namespace, writes the pod's sysctls and
// hostname, replaces its root by an empty read-only tmpfs (pivot_root:
// nothing of the host stays mounted, so there is no /proc or /sys left to
// mask), drops every capability (bounding and ambient sets too), takes the
// pod's uid and gids, sets no_new_privs and installs a seccomp filter that
// allows only what this loop calls. It then closes SYNC_FD: EOF without a
// message is success; a failure writes its message there and exits.

#define SYNC_FD 3
#define EXE_FD 4

static void fail(const char *what) {
	char msg[512];
	int n = snprintf(msg, sizeof msg, "pause: %s: %s", what, strerror(errno));
	if (n > 0) {
		ssize_t w = write(SYNC_FD, msg, n < (int)sizeof msg ? n : (int)sizeof msg - 1);
		(void)w;
	}
	_exit(1);
}

static int write_file(const char *path, const char *value) {
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		return -1;
	}
	size_t len = strlen(value);
	ssize_t n = write(fd, value, len);
	int saved = errno;
	close(fd);
	errno = saved;
	return n == (ssize_t)len ? 0 : -1;
}

#if defined(__x86_64__)
#define PAUSE_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define PAUSE_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "the confined pause knows the seccomp arch of x86_64 and arm64 only"
#endif

#define ALLOW_NR(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)

// install_seccomp allows only the system calls of the loop below and of
// its signal handlers, and write and close on SYNC_FD for the final
// report; anything else, any other arch (x32 included), kills the
// process. RuntimeDefault allows all of these, so this is stricter than
// any filter runc applies to a pause whose pod asks for RuntimeDefault or
// Unconfined (the daemon leaves Localhost profiles to runc).
static int install_seccomp(void) {
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PAUSE_AUDIT_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#if defined(__x86_64__)
		// x32 system calls carry this bit in the x86_64 arch.
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
#endif
#ifdef __NR_pause
		ALLOW_NR(__NR_pause),
#endif
		ALLOW_NR(__NR_ppoll),
		ALLOW_NR(__NR_rt_sigreturn),
		ALLOW_NR(__NR_restart_syscall),
		ALLOW_NR(__NR_wait4),
		ALLOW_NR(__NR_exit_group),
		ALLOW_NR(__NR_exit),
		// write and close: only on SYNC_FD (args[0], both halves).
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_write, 1, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_close, 0, 5),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYNC_FD, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]) + 4),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
	};
	struct sock_fprog prog = {
		.len = (unsigned short)(sizeof filter / sizeof filter[0]),
		.filter = filter,
	};
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

// drop_privileges empties every capability set, takes the pod's ids and
// sets no_new_privs. ngroups < 0 leaves the supplementary groups alone
// (never: the shim always passes groups=).
static void drop_privileges(long uid, long gid, gid_t *groups, int ngroups) {
	for (int cap = 0;; cap++) {
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
			if (errno == EINVAL) {
				break;
			}
			fail("drop bounding capability");
		}
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
		fail("clear ambient capabilities");
	}
	if (ngroups >= 0 && setgroups(ngroups, groups) != 0) {
		fail("setgroups");
	}
	if (setresgid(gid, gid, gid) != 0) {
		fail("setresgid");
	}
	if (setresuid(uid, uid, uid) != 0) {
		fail("setresuid");
	}
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	memset(data, 0, sizeof data);
	if (syscall(SYS_capset, &hdr, data) != 0) {
		fail("clear capabilities");
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		fail("no_new_privs");
	}
}

// empty_root makes an empty read-only tmpfs at dir the root of the
// process's (new, private) mount namespace and detaches everything else.
static void empty_root(const char *dir) {
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
		fail("make mounts private");
	}
	if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0555,size=4k,nr_inodes=16") != 0) {
		fail("mount the empty root");
	}
	if (chdir(dir) != 0) {
		fail("chdir to the empty root");
	}
	if (syscall(SYS_pivot_root, ".", ".") != 0) {
		fail("pivot_root");
	}
	// The old root is stacked on the new one; detach it and all below.
	if (umount2(".", MNT_DETACH) != 0) {
		fail("detach the host's mounts");
	}
	if (chdir("/") != 0) {
		fail("chdir /");
	}
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY, NULL) != 0) {
		fail("remount the root read-only");
	}
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) {
		fail("remount the root mount read-only");
	}
}

// by_shim reports whether the shim started this pause (see above).
static int by_shim(void) {
	int type = 0;
	socklen_t len = sizeof type;
	return getsockopt(SYNC_FD, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_SEQPACKET;
}

// confined sets the process up from the options the shim sends (key=value:
// netns=PATH, sysctl=PATH-UNDER-/proc/sys=VALUE, hostname=NAME, root=DIR,
// uid=N, gid=N, groups=N,N...) and returns to the pause loop. Every
// failure reports on SYNC_FD and exits.
static void confined(void) {
	static char msg[65536];
	static char *opt[1024];
	close(EXE_FD);
	// A runc-run pause is named after /pause; this one would be named
	// after the shim's fd it was started from.
	prctl(PR_SET_NAME, "pause", 0, 0, 0);
	// Sent once the shim has put the process in its cgroup.
	ssize_t len = recv(SYNC_FD, msg, sizeof msg - 1, 0);
	if (len <= 0) {
		_exit(1);
	}
	msg[len] = 0;
	int n = 0;
	for (char *p = msg; p < msg + len && n < (int)(sizeof opt / sizeof opt[0]); p += strlen(p) + 1) {
		opt[n++] = p;
	}
	const char *netns = NULL, *hostname = NULL, *root = NULL;
	long uid = 0, gid = 0;
	static gid_t groups[256];
	int ngroups = -1;
	for (int i = 0; i < n; i++) {
		char *v = strchr(opt[i], '=');
		if (v == NULL) {
			errno = EINVAL;
			fail(opt[i]);
		}
		v++;
		if (strncmp(opt[i], "netns=", 6) == 0) {
			netns = v;
		} else if (strncmp(opt[i], "hostname=", 9) == 0) {
			hostname = v;
		} else if (strncmp(opt[i], "root=", 5) == 0) {
			root = v;
		} else if (strncmp(opt[i], "uid=", 4) == 0) {
			uid = strtol(v, NULL, 10);
		} else if (strncmp(opt[i], "gid=", 4) == 0) {
			gid = strtol(v, NULL, 10);
		} else if (strncmp(opt[i], "groups=", 7) == 0) {
			ngroups = 0;
			for (char *p = v; *p && ngroups < (int)(sizeof groups / sizeof groups[0]);) {
				char *end;
				groups[ngroups++] = (gid_t)strtoul(p, &end, 10);
				p = *end == ',' ? end + 1 : end;
				if (end == p && *p) {
					errno = EINVAL;
					fail(opt[i]);
				}
			}
		} else if (strncmp(opt[i], "sysctl=", 7) != 0) {
			errno = EINVAL;
			fail(opt[i]);
		}
	}
	if (root == NULL) {
		errno = EINVAL;
		fail("no root= option");
	}
	// Kept open across pivot_root: the pages are dropped at the end.
	int smaps = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
	if (netns != NULL) {
		int fd = open(netns, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
			fail("join the pod's network namespace");
		}
		close(fd);
	}
	// Through the host's /proc, still mounted: its sysctl files are those
	// of the opener's network and IPC namespaces, the pod's.
	for (int i = 0; i < n; i++) {
		if (strncmp(opt[i], "sysctl=", 7) != 0) {
			continue;
		}
		char path[4096];
		const char *kv = opt[i] + 7;
		const char *eq = strchr(kv, '=');
		if (eq == NULL || strstr(kv, "..") != NULL || snprintf(path, sizeof path, "/proc/sys/%.*s", (int)(eq - kv), kv) >= (int)sizeof path) {
			errno = EINVAL;
			fail(opt[i]);
		}
		if (write_file(path, eq + 1) != 0) {
			fail(opt[i]);
		}
	}
	if (hostname != NULL && sethostname(hostname, strlen(hostname)) != 0) {
		fail("sethostname");
	}
	empty_root(root);
	drop_privileges(uid, gid, groups, ngroups);
	drop_startup_pages(smaps);
	if (install_seccomp() != 0) {
		fail("seccomp");
	}
	ssize_t w = write(SYNC_FD, "ok", 2);
	(void)w;
	close(SYNC_FD);
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
	if (by_shim()) {
		confined();
	} else {
		drop_startup_pages(open("/proc/self/smaps", O_RDONLY | O_CLOEXEC));
	}
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
