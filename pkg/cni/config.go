package cni

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/containernetworking/cni/libcni"
)

// Reasons reported with NetworkReady=false.
const (
	// ReasonNoConfig: the conf dir has no network config file.
	ReasonNoConfig = "NoNetworkConfig"
	// ReasonInvalidConfig: the first config file cannot be used.
	ReasonInvalidConfig = "InvalidNetworkConfig"
	// ReasonPluginNotReady: a plugin the config names is missing or does
	// not speak the config's CNI version.
	ReasonPluginNotReady = "NetworkPluginNotReady"
	// ReasonClosed: the Manager was closed.
	ReasonClosed = "NetworkManagerClosed"
)

// NotReadyError is Status's error: the pod network cannot be used, for a
// Reason (a CamelCase constant above) explained by Message. The CRI server
// reports both in the NetworkReady condition.
type NotReadyError struct {
	Reason  string
	Message string
	// Err is the underlying error, if any.
	Err error
}

func (e *NotReadyError) Error() string { return e.Reason + ": " + e.Message }
func (e *NotReadyError) Unwrap() error { return e.Err }

// configExts are the extensions of network config files.
var configExts = []string{".conflist", ".conf", ".json"}

// network is a loaded network config.
type network struct {
	file string
	list *libcni.NetworkConfigList
}

// configFiles lists the config files in dir in the order kubelet,
// containerd and CRI-O consider them: by file name, all extensions
// together. A missing dir has none.
func configFiles(dir string) ([]os.DirEntry, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read CNI conf dir: %w", err)
	}
	var files []os.DirEntry
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") || !slices.Contains(configExts, filepath.Ext(e.Name())) {
			continue
		}
		files = append(files, e)
	}
	// ReadDir already sorts by name; sorting again documents that the
	// order is part of the contract.
	slices.SortFunc(files, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return files, nil
}

// signature identifies the state of the config files in dir cheaply: any
// rename, rewrite, replacement or removal changes it. Inode and ctime
// catch an atomic rename of a same-sized file within one mtime tick.
func signature(dir string) string {
	files, err := configFiles(dir)
	if err != nil {
		return "error: " + err.Error()
	}
	var b strings.Builder
	for _, f := range files {
		fmt.Fprintf(&b, "%s", f.Name())
		// Stat follows symlinks, as loading does (ConfigMap mounts
		// are symlinks).
		fi, err := os.Stat(filepath.Join(dir, f.Name()))
		if err != nil {
			b.WriteString(":gone\n")
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			fmt.Fprintf(&b, ":%d:%d:%d.%d:%d.%d\n", st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
		} else {
			fmt.Fprintf(&b, ":%d:%d\n", fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return b.String()
}

// loadNetwork loads the first config file in dir. The error is always a
// *NotReadyError.
func loadNetwork(dir string) (*network, error) {
	files, err := configFiles(dir)
	if err != nil {
		return nil, &NotReadyError{Reason: ReasonInvalidConfig, Message: err.Error(), Err: err}
	}
	if len(files) == 0 {
		return nil, &NotReadyError{Reason: ReasonNoConfig, Message: fmt.Sprintf("no network config found in %s", dir)}
	}
	file := filepath.Join(dir, files[0].Name())
	list, err := loadFile(file)
	if err != nil {
		return nil, &NotReadyError{Reason: ReasonInvalidConfig, Message: fmt.Sprintf("network config %s: %v", file, err), Err: err}
	}
	return &network{file: file, list: list}, nil
}

// loadFile parses one config file: a list from .conflist, a single plugin
// config wrapped into a list from .conf and .json.
func loadFile(file string) (*libcni.NetworkConfigList, error) {
	if filepath.Ext(file) == ".conflist" {
		list, err := libcni.NetworkConfFromFile(file)
		if err != nil {
			return nil, err
		}
		return list, validateList(list)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	conf, err := libcni.NetworkPluginConfFromBytes(data)
	if err != nil {
		return nil, err
	}
	//nolint:staticcheck // .conf files are still what many CNI installers write.
	//lint:ignore SA1019 single-plugin .conf files are what many CNI plugins still install
	list, err := libcni.ConfListFromConf(conf)
	if err != nil {
		return nil, fmt.Errorf("wrap single plugin config into a list: %w", err)
	}
	return list, validateList(list)
}

// validateList checks what libcni's parser lets through but every call
// would fail on.
func validateList(list *libcni.NetworkConfigList) error {
	if list.Name == "" {
		return errors.New("network has no name")
	}
	if list.CNIVersion == "" {
		return errors.New("network has no cniVersion")
	}
	if len(list.Plugins) == 0 {
		return errors.New("network has no plugins")
	}
	return nil
}

// validatePlugins asks every plugin of the list for its supported versions:
// a config installed before its plugin binaries is not ready yet.
func validatePlugins(ctx context.Context, c *libcni.CNIConfig, n *network) error {
	if _, err := c.ValidateNetworkList(ctx, n.list); err != nil {
		return &NotReadyError{Reason: ReasonPluginNotReady, Message: fmt.Sprintf("network %q (%s): %v", n.list.Name, n.file, err), Err: err}
	}
	return nil
}
