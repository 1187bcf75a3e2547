package cdi

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
	cdiapi "tags.cncf.io/container-device-interface/pkg/cdi"
	"tags.cncf.io/container-device-interface/pkg/parser"
)

var (
	// ErrInvalidName: a device name is not vendor.com/class=name.
	ErrInvalidName = errors.New("invalid CDI device name")
	// ErrUnknownDevice: no spec in the spec directories defines the device.
	ErrUnknownDevice = errors.New("unknown CDI device")
	// ErrInject: the device's edits cannot be applied (say, a device node
	// missing on the host).
	ErrInject = errors.New("cannot inject CDI device")
)

// Registry resolves CDI devices from the specs of its directories.
type Registry struct {
	cache *cdiapi.Cache
	dirs  []string
}

// New loads the CDI specs of dirs (in increasing priority: a device
// defined in a later directory wins) and watches the directories; Close
// stops the watch. Specs that fail to load are logged and skipped. No
// directory: every device is unknown.
func New(dirs []string) *Registry {
	r := &Registry{dirs: slices.Clone(dirs)}
	if len(dirs) == 0 {
		return r
	}
	// NewCache's error is always nil (kept for its API's compatibility).
	r.cache, _ = cdiapi.NewCache(cdiapi.WithSpecDirs(dirs...), cdiapi.WithAutoRefresh(true))
	for path, errs := range r.cache.GetErrors() {
		if slices.Contains(r.dirs, path) {
			// A directory that does not exist (yet): watched for.
			klog.V(2).InfoS("CDI spec directory not watched yet", "dir", path, "err", errors.Join(errs...))
			continue
		}
		klog.ErrorS(errors.Join(errs...), "CDI spec not loaded", "spec", path)
	}
	klog.V(2).InfoS("CDI specs loaded", "dirs", dirs, "devices", len(r.cache.ListDevices()))
	return r
}

// Close stops watching the spec directories.
func (r *Registry) Close() {
	if r.cache != nil {
		_ = r.cache.Configure(cdiapi.WithAutoRefresh(false))
	}
}

// Requested returns the CDI devices cfg asks for: CDI_devices first, then
// those of cdi.k8s.io/ annotations (sorted by key), each once.
func Requested(cfg *runtimeapi.ContainerConfig) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(name, from string) error {
		if !parser.IsQualifiedName(name) {
			return fmt.Errorf("%w: %s %q is not vendor.com/class=name", ErrInvalidName, from, name)
		}
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
		return nil
	}
	for i, d := range cfg.GetCDIDevices() {
		if err := add(d.GetName(), fmt.Sprintf("CDI_devices[%d]", i)); err != nil {
			return nil, err
		}
	}
	var keys []string
	for k := range cfg.GetAnnotations() {
		if strings.HasPrefix(k, cdiapi.AnnotationPrefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, d := range strings.Split(cfg.GetAnnotations()[k], ",") {
			if err := add(strings.TrimSpace(d), "annotation "+k); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// Inject applies the edits of devices to spec. A device no spec defines
// is ErrUnknownDevice, naming it and the directories searched.
func (r *Registry) Inject(spec *specs.Spec, devices []string) error {
	if len(devices) == 0 {
		return nil
	}
	if r == nil || r.cache == nil {
		return fmt.Errorf("%w: %s: no CDI spec directory is configured (runtime.cdi_spec_dirs)", ErrUnknownDevice, strings.Join(devices, ", "))
	}
	unresolved, err := r.cache.InjectDevices(spec, devices...)
	if len(unresolved) > 0 {
		return fmt.Errorf("%w: %s is not defined by any CDI spec in %s", ErrUnknownDevice, strings.Join(unresolved, ", "), strings.Join(r.dirs, ", "))
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInject, err)
	}
	return nil
}
