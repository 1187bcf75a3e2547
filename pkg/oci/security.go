package oci

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DefaultCapabilities is the capability set of an unprivileged container:
// the set Docker and containerd grant, which images and Kubernetes users
// have come to rely on.
func DefaultCapabilities() []string {
	return []string{
		"CAP_CHOWN",
		"CAP_DAC_OVERRIDE",
		"CAP_FSETID",
		"CAP_FOWNER",
		"CAP_MKNOD",
		"CAP_NET_RAW",
		"CAP_SETGID",
		"CAP_SETUID",
		"CAP_SETFCAP",
		"CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE",
		"CAP_SYS_CHROOT",
		"CAP_KILL",
		"CAP_AUDIT_WRITE",
	}
}

// AllCapabilities lists every capability up to CAP_CHECKPOINT_RESTORE
// (Linux 5.9). runc skips names the running kernel does not know, so
// listing newer ones is harmless.
func AllCapabilities() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
		"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
		"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
		"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
		"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
		"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
		"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
		"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
		"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
		"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
		"CAP_CHECKPOINT_RESTORE",
	}
}

// GrantableCapabilities are the capabilities in this process's bounding
// set, in AllCapabilities order (which is the kernel's bit order).
func GrantableCapabilities() []string { return slices.Clone(grantableOnce()) }

var grantableOnce = sync.OnceValue(func() []string {
	all := AllCapabilities()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return all
	}
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(line, "CapBnd:")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return all
		}
		var out []string
		for bit, name := range all {
			if mask&(1<<bit) != 0 {
				out = append(out, name)
			}
		}
		return out
	}
	return all
})

// DefaultMaskedPaths are hidden from unprivileged containers: they leak
// host information or expose kernel interfaces that have been used to
// escape containers.
func DefaultMaskedPaths() []string {
	return []string{
		"/proc/acpi",
		"/proc/asound",
		"/proc/kcore",
		"/proc/keys",
		"/proc/latency_stats",
		"/proc/timer_list",
		"/proc/timer_stats",
		"/proc/sched_debug",
		"/proc/scsi",
		"/sys/firmware",
		"/sys/devices/virtual/powercap",
	}
}

// DefaultReadonlyPaths are visible but read-only in unprivileged
// containers.
func DefaultReadonlyPaths() []string {
	return []string{
		"/proc/bus",
		"/proc/fs",
		"/proc/irq",
		"/proc/sys",
		"/proc/sysrq-trigger",
	}
}

// defaultDeviceRules is the device cgroup of an unprivileged container:
// deny everything, then allow mknod of any node (CAP_MKNOD is granted, and
// creating a node is harmless when it cannot be opened) and the char
// devices every process expects.
func defaultDeviceRules() []specs.LinuxDeviceCgroup {
	i := func(v int64) *int64 { return &v }
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "c", Access: "m"},
		{Allow: true, Type: "b", Access: "m"},
		{Allow: true, Type: "c", Major: i(1), Minor: i(3), Access: "rwm"},  // /dev/null
		{Allow: true, Type: "c", Major: i(1), Minor: i(5), Access: "rwm"},  // /dev/zero
		{Allow: true, Type: "c", Major: i(1), Minor: i(7), Access: "rwm"},  // /dev/full
		{Allow: true, Type: "c", Major: i(1), Minor: i(8), Access: "rwm"},  // /dev/random
		{Allow: true, Type: "c", Major: i(1), Minor: i(9), Access: "rwm"},  // /dev/urandom
		{Allow: true, Type: "c", Major: i(5), Minor: i(0), Access: "rwm"},  // /dev/tty
		{Allow: true, Type: "c", Major: i(5), Minor: i(2), Access: "rwm"},  // /dev/ptmx
		{Allow: true, Type: "c", Major: i(136), Minor: nil, Access: "rwm"}, // /dev/pts/*
	}
}

// normalizeCap turns "net_admin", "NET_ADMIN" or "CAP_NET_ADMIN" into
// "CAP_NET_ADMIN"; kubelet passes whatever the pod spec says.
func normalizeCap(c string) string {
	c = strings.ToUpper(strings.TrimSpace(c))
	if c == "ALL" || strings.HasPrefix(c, "CAP_") {
		return c
	}
	return "CAP_" + c
}

// capabilities computes the container's capability set from the CRI add
// and drop lists; prefix is the path of c in the request, for errors.
// "ALL" is applied first in either list so that add=[ALL],
// drop=[CHOWN] means every capability but CHOWN, and
// drop=[ALL], add=[NET_BIND_SERVICE] means only NET_BIND_SERVICE.
func capabilities(prefix string, c *runtimeapi.Capability, privileged bool, grantable []string) (*specs.LinuxCapabilities, error) {
	known := AllCapabilities()
	// "Everything" means everything the daemon can hand out (grantable):
	// a node may withhold some (no CAP_SYS_RESOURCE here), and runc
	// refuses to start a container asking for a capability outside its
	// own bounding set.
	var set []string
	if privileged {
		set = grantable
	} else {
		set = DefaultCapabilities()
	}
	add := make([]string, 0, len(c.GetAddCapabilities()))
	for i, a := range c.GetAddCapabilities() {
		n := normalizeCap(a)
		if n != "ALL" && !slices.Contains(known, n) {
			return nil, invalid(fmt.Sprintf(prefix+".add_capabilities[%d]", i), "unknown capability %q", a)
		}
		if n != "ALL" && !slices.Contains(grantable, n) {
			return nil, invalid(fmt.Sprintf(prefix+".add_capabilities[%d]", i), "capability %q is not available on this node (the runtime does not hold it)", a)
		}
		add = append(add, n)
	}
	drop := make([]string, 0, len(c.GetDropCapabilities()))
	for i, d := range c.GetDropCapabilities() {
		n := normalizeCap(d)
		if n != "ALL" && !slices.Contains(known, n) {
			return nil, invalid(fmt.Sprintf(prefix+".drop_capabilities[%d]", i), "unknown capability %q", d)
		}
		drop = append(drop, n)
	}
	var ambient []string
	for i, a := range c.GetAddAmbientCapabilities() {
		n := normalizeCap(a)
		if n == "ALL" {
			// Ambient capabilities are named one by one: every
			// capability surviving execve for any user is root.
			return nil, invalid(fmt.Sprintf(prefix+".add_ambient_capabilities[%d]", i), "\"ALL\" is not allowed for ambient capabilities")
		}
		if !slices.Contains(known, n) {
			return nil, invalid(fmt.Sprintf(prefix+".add_ambient_capabilities[%d]", i), "unknown capability %q", a)
		}
		// Ambient ones go into every set below, past the add/drop
		// logic: the same check as for add_capabilities.
		if !slices.Contains(grantable, n) {
			return nil, invalid(fmt.Sprintf(prefix+".add_ambient_capabilities[%d]", i), "capability %q is not available on this node (the runtime does not hold it)", a)
		}
		ambient = append(ambient, n)
	}
	if !privileged {
		if slices.Contains(add, "ALL") {
			set = grantable
		}
		if slices.Contains(drop, "ALL") {
			set = nil
		}
		for _, a := range add {
			if a != "ALL" && !slices.Contains(set, a) {
				set = append(set, a)
			}
		}
		set = slices.DeleteFunc(slices.Clone(set), func(s string) bool { return slices.Contains(drop, s) })
	}
	// The kernel keeps an ambient capability only while it is also
	// permitted and inheritable (and it must be in the bounding set to be
	// permitted after execve), so it is added to every set, even past a
	// drop of the same capability.
	for _, a := range ambient {
		if !slices.Contains(set, a) {
			set = append(set, a)
		}
	}
	return &specs.LinuxCapabilities{
		Bounding:    slices.Clone(set),
		Effective:   slices.Clone(set),
		Permitted:   slices.Clone(set),
		Inheritable: slices.Clone(ambient),
		Ambient:     slices.Clone(ambient),
	}, nil
}
