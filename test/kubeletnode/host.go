package kubeletnode

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Paths kubelet uses whatever its --root-dir.
const (
	varLibKubelet      = "/var/lib/kubelet"
	devicePluginDir    = varLibKubelet + "/device-plugins"
	devicePluginSocket = devicePluginDir + "/kubelet.sock"
	containerLogLinks  = "/var/log/containers"
)

// kernelTunables are the sysctls kubelet sets at start (unless
// protectKernelDefaults, which makes it refuse to start instead).
var kernelTunables = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// nodeMinimums are sysctls a kubelet node needs above the kernel's
// defaults, raised for the run and put back after. kubelet (cadvisor, its
// config and pod-manifest watchers) takes about 40 inotify instances, and
// the kernel's default of 128 per user is shared by every process of
// root on the host: a kubelet started while other work holds the rest
// exits with "unable to create inotify: too many open files" (seen when a
// cluster, a benchmark and the suite shared this host). Node images raise
// it the same way (kind asks for 512, systemd distributions ship 8192).
var nodeMinimums = map[string]int{
	"fs/inotify/max_user_instances": 8192,
}

// iptablesChain is a chain kubelet creates in a table; jumps are the
// built-in chains it makes jump to it.
type iptablesChain struct {
	table, chain string
	jumps        []string
	ipv4Only     bool
}

var kubeletChains = []iptablesChain{
	{table: "mangle", chain: "KUBE-IPTABLES-HINT"},
	{table: "mangle", chain: "KUBE-KUBELET-CANARY"},
	{table: "nat", chain: "KUBE-KUBELET-CANARY"},
	{table: "filter", chain: "KUBE-KUBELET-CANARY"},
	{table: "filter", chain: "KUBE-FIREWALL", jumps: []string{"INPUT", "OUTPUT"}, ipv4Only: true},
}

// hostState is what the host looked like before the kubelet ran, for
// the parts kubelet changes.
type hostState struct {
	cgroupDriver string
	sysctls      map[string]string
	// raised: nodeMinimums raised by this run, with their old values.
	raised map[string]string
	// chains kubelet may create that did not exist: "iptables filter
	// KUBE-FIREWALL"...
	newChains []chainRef
	// hadVarLibKubelet... whether each path existed.
	hadVarLibKubelet, hadDevicePluginDir, hadLogLinks bool
	// hadKubepods: the QoS cgroup tree existed (then it is left alone).
	hadKubepods bool
}

type chainRef struct {
	cmd string
	iptablesChain
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func recordHost(cgroupDriver string) (*hostState, error) {
	h := &hostState{
		cgroupDriver:       cgroupDriver,
		sysctls:            map[string]string{},
		raised:             map[string]string{},
		hadVarLibKubelet:   exists(varLibKubelet),
		hadDevicePluginDir: exists(devicePluginDir),
		hadLogLinks:        exists(containerLogLinks),
		hadKubepods:        len(kubepodsDirs(cgroupDriver)) > 0,
	}
	for _, k := range kernelTunables {
		b, err := os.ReadFile("/proc/sys/" + k)
		if err != nil {
			return nil, fmt.Errorf("kubeletnode: read sysctl %s: %w", k, err)
		}
		h.sysctls[k] = strings.TrimSpace(string(b))
	}
	if err := h.raiseMinimums(); err != nil {
		return nil, err
	}
	for _, cmd := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(cmd); err != nil {
			continue
		}
		for _, c := range kubeletChains {
			if c.ipv4Only && cmd == "ip6tables" {
				continue
			}
			if exec.Command(cmd, "-w", "-t", c.table, "-S", c.chain).Run() != nil {
				h.newChains = append(h.newChains, chainRef{cmd: cmd, iptablesChain: c})
			}
		}
	}
	return h, nil
}

// raiseMinimums sets each of nodeMinimums that is lower to its minimum.
func (h *hostState) raiseMinimums() error {
	for k, min := range nodeMinimums {
		b, err := os.ReadFile("/proc/sys/" + k)
		if err != nil {
			return fmt.Errorf("kubeletnode: read sysctl %s: %w", k, err)
		}
		old := strings.TrimSpace(string(b))
		if v, err := strconv.Atoi(old); err == nil && v >= min {
			continue
		}
		if err := os.WriteFile("/proc/sys/"+k, []byte(strconv.Itoa(min)), 0o644); err != nil {
			return fmt.Errorf("kubeletnode: raise sysctl %s to %d: %w", k, min, err)
		}
		h.raised[k] = old
	}
	return nil
}

// restore undoes what kubelet changed: sysctls back to their values,
// chains it created removed, the device-plugin directory and
// /var/log/containers links into podLogs removed, the QoS cgroups it
// created removed.
func (h *hostState) restore(podLogs string) error {
	var errs []error
	for k, v := range h.sysctls {
		cur, _ := os.ReadFile("/proc/sys/" + k)
		if strings.TrimSpace(string(cur)) == v {
			continue
		}
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore sysctl %s=%s: %w", k, v, err))
		}
	}
	// A raised minimum goes back only if nobody changed it since (another
	// run on the host may have raised it too and still need it).
	for k, old := range h.raised {
		cur, _ := os.ReadFile("/proc/sys/" + k)
		if strings.TrimSpace(string(cur)) != strconv.Itoa(nodeMinimums[k]) {
			continue
		}
		if err := os.WriteFile("/proc/sys/"+k, []byte(old), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore sysctl %s=%s: %w", k, old, err))
		}
	}
	for _, c := range h.newChains {
		if exec.Command(c.cmd, "-w", "-t", c.table, "-S", c.chain).Run() != nil {
			continue
		}
		for _, j := range c.jumps {
			for exec.Command(c.cmd, "-w", "-t", c.table, "-D", j, "-j", c.chain).Run() == nil {
			}
		}
		for _, op := range []string{"-F", "-X"} {
			if out, err := exec.Command(c.cmd, "-w", "-t", c.table, op, c.chain).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("%s -t %s %s %s: %v: %s", c.cmd, c.table, op, c.chain, err, out))
			}
		}
	}
	if links, err := os.ReadDir(containerLogLinks); err == nil {
		for _, l := range links {
			p := filepath.Join(containerLogLinks, l.Name())
			if target, err := os.Readlink(p); err == nil && strings.HasPrefix(target, podLogs+"/") {
				errs = append(errs, os.Remove(p))
			}
		}
	}
	if !h.hadLogLinks {
		errs = append(errs, removeEmpty(containerLogLinks))
	}
	if !h.hadDevicePluginDir {
		_ = os.Remove(devicePluginSocket)
		errs = append(errs, removeEmpty(devicePluginDir))
	}
	if !h.hadVarLibKubelet {
		errs = append(errs, removeEmpty(varLibKubelet))
	}
	if !h.hadKubepods {
		errs = append(errs, removeKubepods(h.cgroupDriver))
	}
	return errors.Join(errs...)
}

// removeEmpty removes an empty directory, and says what is left in one
// that is not empty.
func removeEmpty(dir string) error {
	err := os.Remove(dir)
	if err == nil || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	entries, _ := os.ReadDir(dir)
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return fmt.Errorf("kubelet left %s with %v: %w", dir, names, err)
}

// cgroupMounts are the mounted cgroup hierarchies (v1 controllers and the
// v2 tree).
func cgroupMounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var roots []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, typ := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(typ) == 0 || (typ[0] != "cgroup" && typ[0] != "cgroup2") {
			continue
		}
		if mp := fields[4]; !slices.Contains(roots, mp) {
			roots = append(roots, mp)
		}
	}
	return roots
}

// kubepodsName is the top QoS cgroup under the driver's naming.
func kubepodsName(driver string) string {
	if driver == "systemd" {
		return "kubepods.slice"
	}
	return "kubepods"
}

// kubepodsDirs are the kubepods directories in every hierarchy.
func kubepodsDirs(driver string) []string {
	var out []string
	for _, root := range cgroupMounts() {
		if p := filepath.Join(root, kubepodsName(driver)); exists(p) {
			out = append(out, p)
		}
	}
	return out
}

// PodCgroups lists the pod-level cgroups kubelet has (directories named
// pod<uid> under kubepods and its QoS classes, or the systemd
// kubepods-<qos>-pod<uid>.slice units), in every hierarchy. A pod whose
// cgroup is gone has been torn down completely by kubelet.
func PodCgroups(driver string) []string {
	var out []string
	for _, top := range kubepodsDirs(driver) {
		_ = filepath.WalkDir(top, func(p string, e os.DirEntry, err error) error {
			if err != nil || !e.IsDir() {
				return nil
			}
			name := e.Name()
			if strings.HasPrefix(name, "pod") || strings.Contains(name, "-pod") {
				out = append(out, p)
				return filepath.SkipDir
			}
			return nil
		})
	}
	return out
}

// removeKubepods removes the QoS cgroup tree. Processes still in it are
// reported, not killed: they belong to pods that were not torn down.
func removeKubepods(driver string) error {
	if driver == "systemd" {
		if exists("/run/systemd/system") {
			if out, err := exec.Command("systemctl", "stop", "kubepods.slice").CombinedOutput(); err != nil {
				return fmt.Errorf("systemctl stop kubepods.slice: %v: %s", err, out)
			}
		}
		return nil
	}
	var errs []error
	for _, top := range kubepodsDirs(driver) {
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
		for _, d := range dirs {
			if procs, _ := os.ReadFile(filepath.Join(d, "cgroup.procs")); len(strings.TrimSpace(string(procs))) > 0 {
				errs = append(errs, fmt.Errorf("cgroup %s still has processes %s", d, strings.Fields(string(procs))))
				continue
			}
			var err error
			for range 50 {
				if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
					err = nil
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// KillPods does to the pods what a reboot does: every process in the
// kubepods cgroups is SIGKILLed and the cgroups are removed (under
// systemd, kubepods.slice is stopped). Kubelet recreates the QoS cgroups
// when it starts.
func KillPods(driver string) error {
	if driver == "systemd" {
		return removeKubepods(driver)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		alive := 0
		for _, top := range kubepodsDirs(driver) {
			_ = filepath.WalkDir(top, func(p string, e os.DirEntry, err error) error {
				if err != nil || !e.IsDir() {
					return nil
				}
				procs, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
				for _, f := range strings.Fields(string(procs)) {
					if pid, err := strconv.Atoi(f); err == nil {
						alive++
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
				return nil
			})
		}
		if alive == 0 {
			return removeKubepods(driver)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d processes in the kubepods cgroups survive SIGKILL", alive)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
