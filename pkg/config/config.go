package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/cgroups"
)

// DefaultPath is where the daemon looks for its config when --config is not given.
const DefaultPath = "/etc/cri-runtimed/config.toml"

// Config is the daemon configuration.
type Config struct {
	// Root holds persistent state: meta.db, content/, snapshots/.
	Root string `toml:"root" json:"rootDir" comment:"Persistent state: meta.db, content/ and snapshots/."`
	// State holds volatile state: the socket, shim sockets, netns pins.
	State string `toml:"state" json:"stateDir" comment:"Volatile state: sockets, shim sockets, netns pins, per-pod files."`
	// LogVerbosity is klog's -v level.
	LogVerbosity int `toml:"log_verbosity" comment:"Log verbosity (klog -v, 0-10): 2 logs one line per pod, container and image lifecycle event, 4 and up are for debugging. The -v flag, when given, wins."`
	// MaxProcs is the daemon's GOMAXPROCS; 0 chooses (see
	// cmd/cri-runtimed's maxProcs).
	MaxProcs int `toml:"max_procs" comment:"CPUs the daemon runs its Go code on at once (GOMAXPROCS). 0: 1 on a node of 2 CPUs or fewer (a CRI call is answered by one thread, without waking a second one), else Go's default. A GOMAXPROCS environment variable wins."`

	GRPC    GRPC    `toml:"grpc"`
	Image   Image   `toml:"image"`
	Runtime Runtime `toml:"runtime"`
	CNI     CNI     `toml:"cni"`
	// Streaming is the exec, attach and port-forward server.
	Streaming Streaming `toml:"streaming"`
	// Metrics is the Prometheus endpoint.
	Metrics Metrics `toml:"metrics"`
	// Tracing exports OpenTelemetry spans.
	Tracing Tracing `toml:"tracing"`
	// NRI is the Node Resource Interface: plugins that see and adjust
	// every pod and container.
	NRI NRI `toml:"nri"`
}

// NRI configures the Node Resource Interface, with containerd's keys and
// defaults.
type NRI struct {
	Disable            bool   `toml:"disable" comment:"Turn NRI off: no socket, no plugins, no hook calls."`
	DisableConnections bool   `toml:"disable_connections" comment:"Only run the plugins of plugin_path; accept no connection on socket_path."`
	PluginConfigPath   string `toml:"plugin_config_path" comment:"Configs of the plugins in plugin_path: <index>-<name>.conf or <name>.conf."`
	PluginPath         string `toml:"plugin_path" comment:"Plugins started with the daemon: executables named <index>-<name>."`
	// PluginRegistrationTimeout bounds a plugin's registration.
	PluginRegistrationTimeout Duration `toml:"plugin_registration_timeout" comment:"A plugin that has not registered this long after starting or connecting is dropped."`
	// PluginRequestTimeout bounds each request to a plugin.
	PluginRequestTimeout Duration `toml:"plugin_request_timeout" comment:"A plugin that does not answer a request within this is dropped (unless its failure policy keeps it) and the request goes on without it."`
	SocketPath           string   `toml:"socket_path" comment:"Socket external plugins connect to."`
	// DefaultValidator is NRI's built-in validator of adjustments.
	DefaultValidator NRIValidator `toml:"default_validator" comment:"The built-in validator: rejects container adjustments the node does not allow."`
}

// NRIValidator configures NRI's default validator, with the keys of
// containerd's default_validator table.
type NRIValidator struct {
	Enable                                bool     `toml:"enable" comment:"Validate every container adjustment with the rules below."`
	RejectOCIHookAdjustment               bool     `toml:"reject_oci_hook_adjustment" comment:"Reject adjustments that add OCI hooks."`
	RejectRuntimeDefaultSeccompAdjustment bool     `toml:"reject_runtime_default_seccomp_adjustment" comment:"Reject seccomp changes of containers with the RuntimeDefault profile."`
	RejectUnconfinedSeccompAdjustment     bool     `toml:"reject_unconfined_seccomp_adjustment" comment:"Reject seccomp changes of unconfined containers."`
	RejectCustomSeccompAdjustment         bool     `toml:"reject_custom_seccomp_adjustment" comment:"Reject seccomp changes of containers with a Localhost profile."`
	RejectNamespaceAdjustment             bool     `toml:"reject_namespace_adjustment" comment:"Reject adjustments of Linux namespaces."`
	RejectSysctlAdjustment                bool     `toml:"reject_sysctl_adjustment" comment:"Reject adjustments of sysctls."`
	RequiredPlugins                       []string `toml:"required_plugins" comment:"Plugins that must have seen a container for it to be created."`
	TolerateMissingAnnotation             string   `toml:"tolerate_missing_plugins_annotation" comment:"Annotation that lets a pod or container tolerate missing required plugins."`
}

// Tracing configures OpenTelemetry tracing.
type Tracing struct {
	Endpoint string `toml:"endpoint" comment:"host:port of an OTLP/gRPC collector receiving a span per CRI call and per pod start and pull phase; empty: off."`
	// Insecure sends spans in plaintext (a collector on the node).
	Insecure bool `toml:"insecure" comment:"Plaintext to the collector; false: TLS with the system's roots."`
	// SamplingRatio is the share of calls traced that arrive without a
	// sampled parent (kubelet's own sampling decides for the others).
	SamplingRatio float64 `toml:"sampling_ratio" comment:"Fraction (0 to 1) of CRI calls traced when the caller sends no sampled trace context."`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	Address string `toml:"address" comment:"host:port serving Prometheus metrics at /metrics (plain http); empty: off."`
}

// Streaming configures the server whose URLs the Exec, Attach and
// PortForward RPCs return.
type Streaming struct {
	Address string `toml:"address" comment:"host:port of the exec/attach/port-forward server; port 0 picks a free port. Kubelet (on this node) connects to the URLs it hands out."`
	// TLSCertFile and TLSKeyFile, both set, serve https.
	TLSCertFile string `toml:"tls_cert_file" comment:"PEM certificate for https; empty serves plain http (fine on loopback)."`
	TLSKeyFile  string `toml:"tls_key_file" comment:"PEM private key of tls_cert_file."`
	// IdleTimeout closes streams without traffic for that long.
	IdleTimeout Duration `toml:"stream_idle_timeout" comment:"A stream connection without traffic for this long is closed."`
	// CreationTimeout bounds how long a client may take to open its streams.
	CreationTimeout Duration `toml:"stream_creation_timeout" comment:"How long a client may take to open the streams of a SPDY connection."`
}

// CNI configures pod networking.
type CNI struct {
	ConfDir       string   `toml:"conf_dir" comment:"Directory of CNI network configs; the first by file name is used."`
	BinDirs       []string `toml:"bin_dirs" comment:"Directories searched, in order, for CNI plugin binaries."`
	PluginTimeout Duration `toml:"plugin_timeout" comment:"A CNI plugin call running longer is killed and the pod operation fails."`
}

// Values of runtime.sandbox_start.
const (
	SandboxStartShim    = "shim"
	SandboxStartRuntime = "runc"
)

// Runtime configures pods and containers.
type Runtime struct {
	// DefaultHandler is used when a pod names no runtime handler.
	DefaultHandler string `toml:"default_handler" comment:"Runtime handler used when a pod names none."`
	// SandboxImage, when set, runs pods with that image's entrypoint as the
	// sandbox process instead of the built-in pause.
	SandboxImage string `toml:"sandbox_image" comment:"Empty: pods use the built-in pause (no image pull). Set to an image to run it as the sandbox instead."`
	// SandboxImageAuthFile holds the credentials the sandbox image is
	// pulled with (kubelet sends none for it).
	SandboxImageAuthFile string `toml:"sandbox_image_auth_file" comment:"Credentials for pulling sandbox_image: a file in Docker's config.json format ({\"auths\": {\"<registry>\": {\"auth\": \"<base64 user:password>\"}}}); empty: anonymous."`
	// SandboxStart says who starts a pod's built-in pause: "shim" (the
	// pod's shim, without an OCI runtime, confined as runc would confine
	// it; pods it cannot start so fall back to the runtime) or "runc"
	// (the pod's OCI runtime, always).
	SandboxStart string `toml:"sandbox_start" comment:"Who starts the built-in pause: shim (the pod's shim, without the OCI runtime: one runtime process less per pod; pods it cannot start so, such as systemd cgroups on a host not on cgroup v2 alone, AppArmor/SELinux labels, Localhost seccomp, privileged or sandbox_image, use the runtime) or runc (the pod's OCI runtime)."`
	// CgroupDriver is cgroupfs, or systemd when systemd runs the node.
	CgroupDriver string `toml:"cgroup_driver" comment:"cgroupfs or systemd; empty picks systemd when systemd runs the node."`
	// DefaultCgroupParent holds the cgroups of pods whose config names no
	// cgroup parent; empty is the driver's default.
	DefaultCgroupParent string `toml:"default_cgroup_parent" comment:"Where pods whose config names no cgroup parent (crictl) get a cgroup each: an absolute path for cgroupfs, a slice for systemd. Empty: /cri-runtimed (cgroupfs) or cri_runtimed.slice (systemd)."`
	// MaxExecSyncOutput bounds what ExecSync keeps of each stream.
	MaxExecSyncOutput int `toml:"max_exec_sync_output" comment:"Bytes of stdout and of stderr ExecSync returns; the rest is discarded."`
	// MaxContainerLogLineSize splits longer lines into partial log records.
	MaxContainerLogLineSize int `toml:"max_container_log_line_size" comment:"Longer lines are split into partial (P) CRI log records."`
	// CDISpecDirs hold the CDI specs devices are resolved from.
	CDISpecDirs []string `toml:"cdi_spec_dirs" comment:"Directories of CDI device specs (later ones take precedence), watched for changes; empty: CDI devices are refused."`
	// Handlers maps runtime handler names to OCI runtimes.
	Handlers map[string]Handler `toml:"handlers" comment:"OCI runtimes by runtime handler name."`
}

// Handler is one OCI runtime.
type Handler struct {
	// Binary is the runtime's path, or a name looked up in PATH.
	Binary string `toml:"binary"`
	// Root is the runtime's --root state directory; empty means
	// <state>/runtime/<handler>.
	Root string `toml:"root,omitempty"`
}

// GRPC configures the CRI endpoint.
type GRPC struct {
	Address string `toml:"address" comment:"Unix socket serving CRI v1."`
	// Mode is the socket's file mode, as an octal string.
	Mode string `toml:"mode" comment:"File mode of the socket (octal)."`
	// Group, when set, owns the socket so its members can talk CRI.
	Group string `toml:"group" comment:"Group owning the socket; empty keeps root's."`
	// MaxRecvMessageSize and MaxSendMessageSize bound one gRPC message.
	MaxRecvMessageSize int `toml:"max_recv_message_size" comment:"Largest gRPC message accepted, in bytes."`
	MaxSendMessageSize int `toml:"max_send_message_size" comment:"Largest gRPC message sent, in bytes."`
}

// Image configures pulls, the content store and the snapshotter.
type Image struct {
	Snapshotter            string   `toml:"snapshotter" comment:"overlayfs (default) or native; overlayfs falls back to native when the filesystem cannot mount overlay."`
	RegistryConfigPath     string   `toml:"registry_config_path" comment:"Directory of <host>/hosts.toml files, containerd's certs.d format."`
	MaxConcurrentDownloads int      `toml:"max_concurrent_downloads" comment:"Layers downloaded at once per pull."`
	PullProgressTimeout    Duration `toml:"pull_progress_timeout" comment:"A pull that receives no byte for this long is cancelled."`
	MaxManifestSize        int64    `toml:"max_manifest_size" comment:"Largest manifest, index or image config accepted, in bytes."`
	RegistryRetries        int      `toml:"registry_retries" comment:"Attempts per registry host on 5xx and connection errors."`
	// StaleIngestAge bounds how long a partial download is kept for resume.
	StaleIngestAge Duration `toml:"stale_ingest_age" comment:"Partial downloads older than this are deleted at start."`
	// MaxUncompressedSize bounds what one pull may write to disk.
	MaxUncompressedSize int64 `toml:"max_uncompressed_size" comment:"Most bytes the layers of one pull may expand to; a pull past it fails (decompression bombs). 0: no limit."`
}

// Duration is a time.Duration written as "5m" in TOML.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Default returns the configuration used when no file exists.
func Default() *Config {
	return &Config{
		Root:  "/var/lib/cri-runtimed",
		State: "/run/cri-runtimed",
		GRPC: GRPC{
			Address:            "/run/cri-runtimed/cri-runtimed.sock",
			Mode:               "0660",
			MaxRecvMessageSize: 16 << 20,
			MaxSendMessageSize: 16 << 20,
		},
		Image: Image{
			Snapshotter:            "overlayfs",
			RegistryConfigPath:     "/etc/cri-runtimed/certs.d",
			MaxConcurrentDownloads: 3,
			PullProgressTimeout:    Duration(5 * time.Minute),
			MaxManifestSize:        4 << 20,
			MaxUncompressedSize:    64 << 30,
			RegistryRetries:        3,
			StaleIngestAge:         Duration(24 * time.Hour),
		},
		Tracing: Tracing{SamplingRatio: 1},
		Streaming: Streaming{
			Address:         "127.0.0.1:0",
			IdleTimeout:     Duration(4 * time.Hour),
			CreationTimeout: Duration(30 * time.Second),
		},
		CNI: CNI{
			ConfDir:       "/etc/cni/net.d",
			BinDirs:       []string{"/opt/cni/bin", "/usr/lib/cni"},
			PluginTimeout: Duration(time.Minute),
		},
		NRI: NRI{
			PluginConfigPath:          "/etc/nri/conf.d",
			PluginPath:                "/opt/nri/plugins",
			PluginRegistrationTimeout: Duration(5 * time.Second),
			PluginRequestTimeout:      Duration(2 * time.Second),
			SocketPath:                "/var/run/nri/nri.sock",
			// Empty, not nil: "config default" prints the key.
			DefaultValidator: NRIValidator{RequiredPlugins: []string{}},
		},
		Runtime: Runtime{
			DefaultHandler:          "runc",
			SandboxStart:            SandboxStartShim,
			MaxExecSyncOutput:       16 << 20,
			MaxContainerLogLineSize: 16 << 10,
			CDISpecDirs:             []string{"/etc/cdi", "/var/run/cdi"},
			Handlers: map[string]Handler{
				"runc": {Binary: "runc"},
				"crun": {Binary: "crun"},
			},
		},
	}
}

// Load reads path over the defaults. A missing file at the default path
// is not an error (the defaults are used); a missing file that was asked
// for explicitly is.
func Load(path string, explicit bool) (*Config, error) {
	cfg := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !explicit {
			return cfg, cfg.Validate()
		}
		return nil, fmt.Errorf("read config: %w", err)
	}
	if err := Decode(data, cfg); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Decode parses TOML into cfg, refusing unknown keys so a typo is not
// silently ignored.
func Decode(data []byte, cfg *Config) error {
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		var sm *toml.StrictMissingError
		if errors.As(err, &sm) {
			return fmt.Errorf("unknown key(s):\n%s", sm.String())
		}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return fmt.Errorf("line %d column %d: %s", row, col, de.Error())
		}
		return err
	}
	return nil
}

// Validate checks values that TOML types cannot.
func (c *Config) Validate() error {
	var errs []string
	abs := func(key, v string) {
		if !filepath.IsAbs(v) {
			errs = append(errs, fmt.Sprintf("%s: %q must be an absolute path", key, v))
		}
	}
	abs("root", c.Root)
	abs("state", c.State)
	abs("grpc.address", c.GRPC.Address)
	abs("image.registry_config_path", c.Image.RegistryConfigPath)
	if c.MaxProcs < 0 {
		errs = append(errs, fmt.Sprintf("max_procs: %d is negative", c.MaxProcs))
	}
	if c.LogVerbosity < 0 || c.LogVerbosity > 10 {
		errs = append(errs, fmt.Sprintf("log_verbosity: %d is not between 0 and 10", c.LogVerbosity))
	}
	if _, err := c.GRPC.FileMode(); err != nil {
		errs = append(errs, fmt.Sprintf("grpc.mode: %v", err))
	}
	switch c.Image.Snapshotter {
	case "overlayfs", "native":
	default:
		errs = append(errs, fmt.Sprintf("image.snapshotter: %q is not one of overlayfs, native", c.Image.Snapshotter))
	}
	if c.Image.MaxConcurrentDownloads < 1 {
		errs = append(errs, "image.max_concurrent_downloads: must be at least 1")
	}
	if c.Image.PullProgressTimeout <= 0 {
		errs = append(errs, "image.pull_progress_timeout: must be positive")
	}
	if c.Image.MaxManifestSize < 1024 {
		errs = append(errs, "image.max_manifest_size: must be at least 1024")
	}
	if c.Image.MaxUncompressedSize < 0 {
		errs = append(errs, "image.max_uncompressed_size: must not be negative")
	}
	if c.Image.RegistryRetries < 1 {
		errs = append(errs, "image.registry_retries: must be at least 1")
	}
	if c.GRPC.MaxRecvMessageSize < 1<<20 || c.GRPC.MaxSendMessageSize < 1<<20 {
		errs = append(errs, "grpc.max_recv_message_size/max_send_message_size: must be at least 1048576")
	}
	if _, ok := c.Runtime.Handlers[c.Runtime.DefaultHandler]; !ok {
		errs = append(errs, fmt.Sprintf("runtime.default_handler: %q is not in runtime.handlers", c.Runtime.DefaultHandler))
	}
	for name, h := range c.Runtime.Handlers {
		if h.Binary == "" {
			errs = append(errs, fmt.Sprintf("runtime.handlers.%s.binary: empty", name))
		}
		if h.Root != "" && !filepath.IsAbs(h.Root) {
			errs = append(errs, fmt.Sprintf("runtime.handlers.%s.root: %q must be an absolute path", name, h.Root))
		}
	}
	for i, d := range c.Runtime.CDISpecDirs {
		abs(fmt.Sprintf("runtime.cdi_spec_dirs[%d]", i), d)
	}
	abs("cni.conf_dir", c.CNI.ConfDir)
	for i, d := range c.CNI.BinDirs {
		abs(fmt.Sprintf("cni.bin_dirs[%d]", i), d)
	}
	if c.CNI.PluginTimeout <= 0 {
		errs = append(errs, "cni.plugin_timeout: must be positive")
	}
	switch c.Runtime.SandboxStart {
	case SandboxStartShim, SandboxStartRuntime:
	default:
		errs = append(errs, fmt.Sprintf("runtime.sandbox_start: %q is not one of %s, %s", c.Runtime.SandboxStart, SandboxStartShim, SandboxStartRuntime))
	}
	switch c.Runtime.CgroupDriver {
	case "", cgroups.CgroupfsName, cgroups.SystemdName:
		// With the driver this node would use (the check connects to
		// nothing).
		if d, err := cgroups.New(c.Runtime.CgroupDriver, cgroups.WithDefaultParent(c.Runtime.DefaultCgroupParent)); err != nil {
			errs = append(errs, fmt.Sprintf("runtime.default_cgroup_parent: %v", err))
		} else {
			d.Close()
		}
	default:
		errs = append(errs, fmt.Sprintf("runtime.cgroup_driver: %q is not one of cgroupfs, systemd", c.Runtime.CgroupDriver))
	}
	if c.Runtime.MaxExecSyncOutput < 1024 {
		errs = append(errs, "runtime.max_exec_sync_output: must be at least 1024")
	}
	if c.Runtime.MaxContainerLogLineSize < 256 {
		errs = append(errs, "runtime.max_container_log_line_size: must be at least 256")
	}
	errs = append(errs, c.Streaming.validate()...)
	if a := c.Tracing.Endpoint; a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Sprintf("tracing.endpoint: %q is not host:port: %v", a, err))
		}
	}
	if r := c.Tracing.SamplingRatio; r < 0 || r > 1 {
		errs = append(errs, "tracing.sampling_ratio: must be between 0 and 1")
	}
	if a := c.Metrics.Address; a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Sprintf("metrics.address: %q is not host:port: %v", a, err))
		}
	}
	errs = append(errs, c.NRI.validate()...)
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

func (s Streaming) validate() []string {
	var errs []string
	if _, port, err := net.SplitHostPort(s.Address); err != nil {
		errs = append(errs, fmt.Sprintf("streaming.address: %q is not host:port: %v", s.Address, err))
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		errs = append(errs, fmt.Sprintf("streaming.address: %q has no valid port", s.Address))
	}
	if (s.TLSCertFile == "") != (s.TLSKeyFile == "") {
		errs = append(errs, "streaming.tls_cert_file and streaming.tls_key_file: set both or neither")
	}
	if s.IdleTimeout <= 0 {
		errs = append(errs, "streaming.stream_idle_timeout: must be positive")
	}
	if s.CreationTimeout <= 0 {
		errs = append(errs, "streaming.stream_creation_timeout: must be positive")
	}
	return errs
}

func (n NRI) validate() []string {
	if n.Disable {
		return nil
	}
	var errs []string
	for _, p := range [][2]string{{"nri.plugin_config_path", n.PluginConfigPath}, {"nri.plugin_path", n.PluginPath}, {"nri.socket_path", n.SocketPath}} {
		if !filepath.IsAbs(p[1]) {
			errs = append(errs, fmt.Sprintf("%s: %q must be an absolute path", p[0], p[1]))
		}
	}
	if n.PluginRegistrationTimeout <= 0 {
		errs = append(errs, "nri.plugin_registration_timeout: must be positive")
	}
	if n.PluginRequestTimeout <= 0 {
		errs = append(errs, "nri.plugin_request_timeout: must be positive")
	}
	return errs
}

// FileMode parses Mode.
func (g GRPC) FileMode() (os.FileMode, error) {
	var m uint32
	if _, err := fmt.Sscanf(g.Mode, "%o", &m); err != nil || m > 0o777 {
		return 0, fmt.Errorf("%q is not an octal file mode", g.Mode)
	}
	return os.FileMode(m), nil
}

// Encode writes cfg as commented TOML.
func (c *Config) Encode() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# cri-runtimed configuration. Every key is shown with its default, and\n# whether SIGHUP (kill -HUP, systemctl reload) applies it to the running daemon.\n")
	enc := toml.NewEncoder(&buf)
	enc.SetIndentTables(true)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return annotate(buf.Bytes()), nil
}

// HandlerRoot is the --root directory of a runtime handler.
func (c *Config) HandlerRoot(name string) string {
	if h := c.Runtime.Handlers[name]; h.Root != "" {
		return h.Root
	}
	return filepath.Join(c.State, "runtime", name)
}

// Paths derived from Root and State.
func (c *Config) MetaDBPath() string { return filepath.Join(c.Root, "meta.db") }
func (c *Config) ContentDir() string { return filepath.Join(c.Root, "content") }

// AdminSocketPath is the root-only socket `cri-runtimed images` talks to.
func (c *Config) AdminSocketPath() string { return filepath.Join(c.State, "admin.sock") }

// CNICacheDir keeps CNI results so that DEL works after a restart.
func (c *Config) CNICacheDir() string { return filepath.Join(c.Root, "cni", "cache") }
func (c *Config) SnapshotDir(name string) string {
	return filepath.Join(c.Root, "snapshots", name)
}
