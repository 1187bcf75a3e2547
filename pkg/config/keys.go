package config

import (
	"bufio"
	"bytes"
	"regexp"
	"strings"
)

// Group names what applies a reloadable key to the running daemon: the
// daemon's reload applies each group whose keys changed, as one.
type Group string

// The groups of reloadable keys.
const (
	GroupVerbosity   Group = "verbosity"
	GroupMetrics     Group = "metrics"
	GroupTracing     Group = "tracing"
	GroupPull        Group = "pull"
	GroupHandlers    Group = "handlers"
	GroupNetwork     Group = "network"
	GroupNRITimeouts Group = "nri-timeouts"
	GroupNRI         Group = "nri"
)

// Key is a config key, or a table of keys when its name ends in ".", and
// what SIGHUP does with it. It is the one list of keys that reload, the
// annotations of `config default` and the README follow.
type Key struct {
	Name string
	// Group applies it on SIGHUP; empty: it needs a restart.
	Group Group
	// Note says what a reload does with it, or why it needs a restart.
	Note string
	// copy sets the key of dst to its value in src.
	copy func(dst, src *Config)
}

// Reloadable says whether SIGHUP applies the key.
func (k Key) Reloadable() bool { return k.Group != "" }

const (
	notePull     = "applies to the pulls that start afterwards"
	noteNRI      = "restarts NRI: plugins of plugin_path are restarted, external ones are disconnected and reconnect, all are resynchronized with every pod and container; pods are untouched"
	noteTracing  = "the exporter is replaced; spans it holds are flushed to the old endpoint, calls in flight are traced to the new one"
	noteStream   = "the streaming server is bound at start and kubelet holds URLs it handed out"
	noteGRPC     = "the CRI socket is bound and its gRPC server built at start"
	noteHandlers = "applies to new pods (their runtime's features are probed then); running pods keep the runtime they started with"
)

// keys lists every key of Config. TestKeysCoverConfig fails when a key
// is added to Config without its line here.
var keys = []Key{
	{Name: "root", Note: "the stores (meta.db, content, snapshots) are opened at start"},
	{Name: "state", Note: "sockets, shims and pods live under it"},
	{Name: "log_verbosity", Group: GroupVerbosity, Note: "applies at once (a -v flag given on the command line wins); running shims keep their level",
		copy: func(d, s *Config) { d.LogVerbosity = s.LogVerbosity }},
	{Name: "max_procs", Note: "set once, at start"},
	{Name: "grpc.", Note: noteGRPC},

	{Name: "image.snapshotter", Note: "the snapshotter holding every image's snapshots is opened at start"},
	{Name: "image.stale_ingest_age", Note: "read once, when partial downloads are cleaned up at start"},
	{Name: "image.registry_config_path", Group: GroupPull, Note: notePull, copy: func(d, s *Config) { d.Image.RegistryConfigPath = s.Image.RegistryConfigPath }},
	{Name: "image.registry_retries", Group: GroupPull, Note: notePull, copy: func(d, s *Config) { d.Image.RegistryRetries = s.Image.RegistryRetries }},
	{Name: "image.max_concurrent_downloads", Group: GroupPull, Note: notePull, copy: func(d, s *Config) { d.Image.MaxConcurrentDownloads = s.Image.MaxConcurrentDownloads }},
	{Name: "image.pull_progress_timeout", Group: GroupPull, Note: notePull, copy: func(d, s *Config) { d.Image.PullProgressTimeout = s.Image.PullProgressTimeout }},
	{Name: "image.max_manifest_size", Group: GroupPull, Note: notePull, copy: func(d, s *Config) { d.Image.MaxManifestSize = s.Image.MaxManifestSize }},
	{Name: "image.max_uncompressed_size", Group: GroupPull, Note: notePull, copy: func(d, s *Config) { d.Image.MaxUncompressedSize = s.Image.MaxUncompressedSize }},

	{Name: "runtime.default_handler", Group: GroupHandlers, Note: noteHandlers, copy: func(d, s *Config) { d.Runtime.DefaultHandler = s.Runtime.DefaultHandler }},
	{Name: "runtime.handlers.", Group: GroupHandlers, Note: noteHandlers, copy: func(d, s *Config) { d.Runtime.Handlers = s.Runtime.Handlers }},
	{Name: "runtime.sandbox_image", Note: "the pod controller is built with it at start"},
	{Name: "runtime.sandbox_image_auth_file", Note: "the pod controller is built with it at start"},
	{Name: "runtime.sandbox_start", Note: "the pod controller is built with it at start; a running pause stays with whoever started it"},
	{Name: "runtime.cgroup_driver", Note: "running pods' cgroups belong to the driver chosen at start"},
	{Name: "runtime.default_cgroup_parent", Note: "running pods' cgroups were made under it"},
	{Name: "runtime.max_exec_sync_output", Note: "the container controller is built with it at start"},
	{Name: "runtime.max_container_log_line_size", Note: "running shims were started with it"},
	{Name: "runtime.cdi_spec_dirs", Note: "the CDI registry watches the directories it started with (their files are re-read as they change)"},

	{Name: "cni.conf_dir", Group: GroupNetwork, Note: "the network config is reloaded at once; attached pods keep their network", copy: func(d, s *Config) { d.CNI.ConfDir = s.CNI.ConfDir }},
	{Name: "cni.bin_dirs", Group: GroupNetwork, Note: "applies to the next CNI call, the DEL of attached pods included", copy: func(d, s *Config) { d.CNI.BinDirs = s.CNI.BinDirs }},
	{Name: "cni.plugin_timeout", Note: "the CNI manager is built with it at start"},

	{Name: "streaming.", Note: noteStream},

	{Name: "metrics.address", Group: GroupMetrics, Note: "the listener moves at once (the new one opens before the old one closes)", copy: func(d, s *Config) { d.Metrics.Address = s.Metrics.Address }},

	{Name: "tracing.endpoint", Group: GroupTracing, Note: noteTracing, copy: func(d, s *Config) { d.Tracing.Endpoint = s.Tracing.Endpoint }},
	{Name: "tracing.insecure", Group: GroupTracing, Note: noteTracing, copy: func(d, s *Config) { d.Tracing.Insecure = s.Tracing.Insecure }},
	{Name: "tracing.sampling_ratio", Group: GroupTracing, Note: "applies to the calls that begin afterwards", copy: func(d, s *Config) { d.Tracing.SamplingRatio = s.Tracing.SamplingRatio }},

	{Name: "nri.plugin_registration_timeout", Group: GroupNRITimeouts, Note: "applies to the next registration, without restarting NRI", copy: func(d, s *Config) { d.NRI.PluginRegistrationTimeout = s.NRI.PluginRegistrationTimeout }},
	{Name: "nri.plugin_request_timeout", Group: GroupNRITimeouts, Note: "applies to the next request, without restarting NRI", copy: func(d, s *Config) { d.NRI.PluginRequestTimeout = s.NRI.PluginRequestTimeout }},
	{Name: "nri.disable", Group: GroupNRI, Note: noteNRI, copy: func(d, s *Config) { d.NRI.Disable = s.NRI.Disable }},
	{Name: "nri.disable_connections", Group: GroupNRI, Note: noteNRI, copy: func(d, s *Config) { d.NRI.DisableConnections = s.NRI.DisableConnections }},
	{Name: "nri.plugin_config_path", Group: GroupNRI, Note: noteNRI, copy: func(d, s *Config) { d.NRI.PluginConfigPath = s.NRI.PluginConfigPath }},
	{Name: "nri.plugin_path", Group: GroupNRI, Note: noteNRI, copy: func(d, s *Config) { d.NRI.PluginPath = s.NRI.PluginPath }},
	{Name: "nri.socket_path", Group: GroupNRI, Note: noteNRI + "; the old socket is removed", copy: func(d, s *Config) { d.NRI.SocketPath = s.NRI.SocketPath }},
	{Name: "nri.default_validator.", Group: GroupNRI, Note: noteNRI, copy: func(d, s *Config) { d.NRI.DefaultValidator = s.NRI.DefaultValidator }},
}

// Lookup is the entry of a dotted key: its own, or that of the table
// holding it.
func Lookup(key string) (Key, bool) {
	for _, k := range keys {
		if k.Name == key || strings.HasSuffix(k.Name, ".") && strings.HasPrefix(key, k.Name) {
			return k, true
		}
	}
	return Key{}, false
}

// Keys is every entry, in the file's order.
func Keys() []Key { return append([]Key(nil), keys...) }

// Apply sets the given keys of dst to their values in src, and returns
// the groups they belong to. Keys that need a restart are left alone.
func Apply(dst, src *Config, changed []string) map[Group][]string {
	groups := map[Group][]string{}
	done := map[string]bool{}
	for _, name := range changed {
		k, ok := Lookup(name)
		if !ok || !k.Reloadable() {
			continue
		}
		groups[k.Group] = append(groups[k.Group], name)
		// A table's entry copies the whole table once.
		if !done[k.Name] {
			k.copy(dst, src)
			done[k.Name] = true
		}
	}
	return groups
}

var (
	tableRe = regexp.MustCompile(`^\s*\[([^\]]+)\]\s*$`)
	keyRe   = regexp.MustCompile(`^(\s*)([A-Za-z0-9_]+) = `)
)

// annotate adds to the encoded config, above each key, whether SIGHUP
// applies it.
func annotate(toml []byte) []byte {
	var out bytes.Buffer
	table := ""
	sc := bufio.NewScanner(bytes.NewReader(toml))
	for sc.Scan() {
		line := sc.Text()
		if m := tableRe.FindStringSubmatch(line); m != nil {
			table = m[1] + "."
		} else if m := keyRe.FindStringSubmatch(line); m != nil {
			if k, ok := Lookup(table + m[2]); ok {
				what := "Restart needed: "
				if k.Reloadable() {
					what = "SIGHUP: "
				}
				out.WriteString(m[1] + "# " + what + k.Note + ".\n")
			}
		}
		out.WriteString(line + "\n")
	}
	return out.Bytes()
}
