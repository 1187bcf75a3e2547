package cgroups

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// DefaultMount is where every distribution mounts cgroups.
const DefaultMount = "/sys/fs/cgroup"

// Layout is how the host mounts its cgroup hierarchies: v1 controllers
// (legacy), v1 controllers plus an empty cgroup2 tree (systemd's hybrid
// mode, this project's development machine), or cgroup2 alone (unified,
// every current distribution).
type Layout struct {
	// V1Root holds the v1 controller mounts (V1Root/memory,
	// V1Root/cpu,...); empty when no v1 resource controller is mounted.
	V1Root string
	// V2Root is the cgroup2 mount; empty when there is none. A cgroup2 at
	// DefaultMount wins over one elsewhere (hybrid's .../unified).
	V2Root string
	// Mounts lists the mount point of every hierarchy (each v1 controller
	// mount and cgroup2) once.
	Mounts []string
}

// Unified reports whether cgroup v2 alone manages resources: runc then
// applies "unified" settings and crun runs at all. A hybrid host is not
// unified: its controllers are v1.
func (l Layout) Unified() bool { return l.V2Root != "" && l.V1Root == "" }

// OOMFile is the file whose "oom_kill" line counts the OOM kills in the
// cgroup at dir (a path below the mount root, see Resolve): memory.events
// on a unified host, the v1 memory controller's memory.oom_control
// otherwise; "" when neither is mounted.
func (l Layout) OOMFile(dir string) string {
	switch {
	case l.Unified():
		return filepath.Join(l.V2Root, dir, "memory.events")
	case l.V1Root != "":
		return filepath.Join(l.V1Root, "memory", dir, "memory.oom_control")
	}
	return ""
}

// hostLayout reads the mounts once: changing them takes a reboot.
var hostLayout = sync.OnceValues(func() (Layout, error) { return ReadLayout("/proc/self/mountinfo") })

// HostLayout is the layout of this host (read once per process).
func HostLayout() (Layout, error) { return hostLayout() }

// Unified reports whether this host runs cgroup v2 alone (false when the
// mounts cannot be read).
func Unified() bool {
	l, err := hostLayout()
	return err == nil && l.Unified()
}

// ReadLayout parses a mountinfo file.
func ReadLayout(mountinfo string) (Layout, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return Layout{}, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	l, err := ParseLayout(f)
	if err != nil {
		return Layout{}, fmt.Errorf("read mounts: %w", err)
	}
	return l, nil
}

// ParseLayout reads the cgroup mounts of a mountinfo listing.
func ParseLayout(r io.Reader) (Layout, error) {
	var l Layout
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		// id parent major:minor root mountpoint opts... - fstype source superopts
		if sep < 5 || sep+1 >= len(fields) {
			continue
		}
		mnt := unescapeMount(fields[4])
		switch fields[sep+1] {
		case "cgroup2":
			if l.V2Root == "" || mnt == DefaultMount {
				l.V2Root = mnt
			}
		case "cgroup":
			if sep+3 >= len(fields) {
				continue
			}
			for _, opt := range strings.Split(fields[sep+3], ",") {
				switch opt {
				case "memory", "cpu", "cpuacct", "pids":
					if l.V1Root == "" {
						l.V1Root = filepath.Dir(mnt)
					}
				}
			}
		default:
			continue
		}
		if !slices.Contains(l.Mounts, mnt) {
			l.Mounts = append(l.Mounts, mnt)
		}
	}
	return l, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, ok := octal3(s[i+1 : i+4]); ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func octal3(s string) (byte, bool) {
	if len(s) != 3 {
		return 0, false
	}
	var v int
	for _, r := range s {
		if r < '0' || r > '7' {
			return 0, false
		}
		v = v*8 + int(r-'0')
	}
	if v > 255 {
		return 0, false
	}
	return byte(v), true
}
