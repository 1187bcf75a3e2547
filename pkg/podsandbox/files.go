package podsandbox

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// defaultShmSize is kubelet's and Docker's default /dev/shm size.
const defaultShmSize = 64 << 20

// podFiles are the files a pod's containers share: written once per pod
// and bind-mounted into each container.
type podFiles struct {
	Hostname, Hosts, Resolv, Shm string
}

func filesIn(dir string) podFiles {
	return podFiles{
		Hostname: filepath.Join(dir, "hostname"),
		Hosts:    filepath.Join(dir, "hosts"),
		Resolv:   filepath.Join(dir, "resolv.conf"),
		Shm:      filepath.Join(dir, "shm"),
	}
}

// writePodFiles writes /etc/hostname, /etc/hosts and /etc/resolv.conf for
// the pod and mounts its /dev/shm (unless the pod uses the host's IPC).
func writePodFiles(f podFiles, hostname string, cfg *runtimeapi.PodSandboxConfig) error {
	hostNet := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
	if err := writeFile(f.Hostname, []byte(hostname+"\n")); err != nil {
		return err
	}
	hosts, err := hostsFile(hostNet, hostname)
	if err != nil {
		return err
	}
	if err := writeFile(f.Hosts, hosts); err != nil {
		return err
	}
	resolv, err := resolvConf(cfg.GetDnsConfig())
	if err != nil {
		return err
	}
	if err := writeFile(f.Resolv, resolv); err != nil {
		return err
	}
	if cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetIpc() != runtimeapi.NamespaceMode_NODE {
		if err := mountShm(f.Shm, defaultShmSize); err != nil {
			return err
		}
	}
	return nil
}

// hostsFile is the host's /etc/hosts for host-network pods (they see the
// host's names), else the loopback entries and the pod's own hostname.
// kubelet usually mounts its own managed hosts file over it.
func hostsFile(hostNet bool, hostname string) ([]byte, error) {
	if hostNet {
		b, err := os.ReadFile("/etc/hosts")
		if err == nil || !os.IsNotExist(err) {
			return b, err
		}
	}
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
	if hostname != "" {
		fmt.Fprintf(&b, "127.0.1.1\t%s\n", hostname)
	}
	return b.Bytes(), nil
}

// resolvConf renders the pod's DNS config; a pod without one gets the
// host's resolv.conf, as with every other runtime.
func resolvConf(dns *runtimeapi.DNSConfig) ([]byte, error) {
	if dns == nil || (len(dns.Servers) == 0 && len(dns.Searches) == 0 && len(dns.Options) == 0) {
		b, err := os.ReadFile("/etc/resolv.conf")
		if os.IsNotExist(err) {
			return nil, nil
		}
		return b, err
	}
	var b bytes.Buffer
	for _, s := range dns.Servers {
		if strings.ContainsAny(s, " \t\n") {
			return nil, fmt.Errorf("%w: dns_config.servers: %q", ErrInvalid, s)
		}
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(dns.Searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(dns.Searches, " "))
	}
	if len(dns.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(dns.Options, " "))
	}
	if strings.ContainsAny(strings.Join(append(dns.Searches, dns.Options...), ""), "\n") {
		return nil, fmt.Errorf("%w: dns_config: newline in searches or options", ErrInvalid)
	}
	return b.Bytes(), nil
}

// writeFile replaces path atomically. It does not fsync: pod files live
// in the volatile state directory, and after a power cut they describe a
// pod that is dead anyway (recovery finds its shim gone and marks it not
// ready; no container can be created in it), so their durability buys
// nothing and would cost every RunPodSandbox a journal commit.
func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func mountShm(path string, size int64) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if mounted(path) {
		return nil
	}
	opts := fmt.Sprintf("mode=1777,size=%d", size)
	if err := unix.Mount("shm", path, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return fmt.Errorf("mount pod /dev/shm at %s: %w", path, err)
	}
	return nil
}

// mounted reports whether path is a mount point (its device differs from
// its parent's, or it is a tmpfs root).
func mounted(path string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(path, &st) != nil || unix.Lstat(filepath.Dir(path), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}
