package shim

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const cgroupRoot = "/sys/fs/cgroup"

// bundleCgroupsPath reads linux.cgroupsPath from the bundle's config.json.
func bundleCgroupsPath(bundle string) string {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return ""
	}
	var spec struct {
		Linux *struct {
			CgroupsPath string `json:"cgroupsPath"`
		} `json:"linux"`
	}
	if json.Unmarshal(b, &spec) != nil || spec.Linux == nil {
		return ""
	}
	return spec.Linux.CgroupsPath
}

// oomFile returns the file holding the cgroup's oom_kill counter, or "" if
// it cannot be located (systemd-style paths, no memory controller).
func oomFile(cgroupsPath string) string {
	if cgroupsPath == "" || strings.Contains(cgroupsPath, ":") {
		return ""
	}
	rel := filepath.Clean("/" + cgroupsPath)
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		return filepath.Join(cgroupRoot, rel, "memory.events") // cgroup v2
	}
	return filepath.Join(cgroupRoot, "memory", rel, "memory.oom_control")
}

// oomKills reads the oom_kill counter (same key in v1 oom_control and v2
// memory.events); -1 if unavailable.
func oomKills(file string) int64 {
	if file == "" {
		return -1
	}
	f, err := os.Open(file)
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == "oom_kill" {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}
