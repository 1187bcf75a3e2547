package main

import (
	"context"
	"fmt"
	"time"

	"k8s.io/klog/v2"

	"github.com/cri-runtimed/cri-runtimed/pkg/cdi"
	"github.com/cri-runtimed/cri-runtimed/pkg/config"
	"github.com/cri-runtimed/cri-runtimed/pkg/nri"
	"github.com/cri-runtimed/cri-runtimed/pkg/telemetry"
	"github.com/cri-runtimed/cri-runtimed/pkg/version"
)

// nriRunner runs the daemon's NRI behind the switch the controllers
// hold, and restarts it with other settings on reload.
type nriRunner struct {
	sw      *nri.Switch
	devices *cdi.Registry
	rec     *telemetry.Recorder
	rt      nri.Runtime // set by start
}

// newNRIRunner sets NRI up as c says; it runs from start.
func newNRIRunner(c config.NRI, devices *cdi.Registry, rec *telemetry.Recorder) (*nriRunner, error) {
	api, err := newNRI(c, devices, rec)
	if err != nil {
		return nil, err
	}
	return &nriRunner{sw: nri.NewSwitch(api), devices: devices, rec: rec}, nil
}

// start starts the plugins and accepts connections, once every pod and
// container is known to rt.
func (n *nriRunner) start(ctx context.Context, rt nri.Runtime) error {
	n.rt = rt
	if a, ok := n.sw.Current().(*nri.Adapter); ok {
		return a.Start(ctx, rt)
	}
	return nil
}

// stop stops what runs.
func (n *nriRunner) stop() { stopNRI(n.sw.Current()) }

func stopNRI(api nri.API) {
	if a, ok := api.(*nri.Adapter); ok {
		a.Stop()
	}
}

// restart replaces the running NRI (set up as from) with one set up as
// to, between two creations. If to cannot start, from is started again
// and the error returned; if neither starts, NRI is off until the next
// reload or start.
func (n *nriRunner) restart(ctx context.Context, from, to config.NRI) error {
	var err error
	start := time.Now()
	n.sw.Replace(func(old nri.API) nri.API {
		stopNRI(old)
		next, e := n.startNew(ctx, to)
		if e == nil {
			return next
		}
		err = e
		prev, e := n.startNew(ctx, from)
		if e != nil {
			klog.ErrorS(e, "NRI could not be started again with its previous settings; NRI is off")
			return nri.Off{}
		}
		return prev
	})
	if err == nil {
		klog.InfoS("NRI restarted", "disabled", to.Disable, "socket", to.SocketPath, "pluginPath", to.PluginPath, "duration", time.Since(start))
	}
	return err
}

func (n *nriRunner) startNew(ctx context.Context, c config.NRI) (nri.API, error) {
	api, err := newNRI(c, n.devices, n.rec)
	if err != nil {
		return nil, err
	}
	if a, ok := api.(*nri.Adapter); ok {
		if err := a.Start(ctx, n.rt); err != nil {
			a.Stop()
			return nil, err
		}
	}
	return api, nil
}

// newNRI sets up the Node Resource Interface, or nri.Off when disabled.
// CDI devices plugins ask for are resolved as the CRI's own.
func newNRI(c config.NRI, devices *cdi.Registry, rec *telemetry.Recorder) (nri.API, error) {
	if c.Disable {
		klog.InfoS("NRI is disabled")
		return nri.Off{}, nil
	}
	v := c.DefaultValidator
	a, err := nri.New("cri-runtimed", version.Version, nri.Options{
		SocketPath:          c.SocketPath,
		PluginPath:          c.PluginPath,
		PluginConfigPath:    c.PluginConfigPath,
		DisableConnections:  c.DisableConnections,
		RegistrationTimeout: time.Duration(c.PluginRegistrationTimeout),
		RequestTimeout:      time.Duration(c.PluginRequestTimeout),
		CDI:                 devices.Inject,
		Telemetry:           rec,
		Validator: &nri.ValidatorConfig{
			Enable:                                v.Enable,
			RejectOCIHookAdjustment:               v.RejectOCIHookAdjustment,
			RejectRuntimeDefaultSeccompAdjustment: v.RejectRuntimeDefaultSeccompAdjustment,
			RejectUnconfinedSeccompAdjustment:     v.RejectUnconfinedSeccompAdjustment,
			RejectCustomSeccompAdjustment:         v.RejectCustomSeccompAdjustment,
			RejectNamespaceAdjustment:             v.RejectNamespaceAdjustment,
			RejectSysctlAdjustment:                v.RejectSysctlAdjustment,
			RequiredPlugins:                       v.RequiredPlugins,
			TolerateMissingAnnotation:             v.TolerateMissingAnnotation,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("nri: %w", err)
	}
	return a, nil
}
