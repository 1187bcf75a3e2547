package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"
)

// States reads the node's objects by state when Prometheus scrapes. Each
// function returns a count per state, including the states that have no
// object (0), so that a series falls to 0 rather than vanishing.
type States struct {
	Pods       func() map[string]int
	Containers func() map[string]int
	// Shims counts the shim processes the daemon is connected to.
	Shims func() int
}

// WatchStates registers the state gauges. Call it once, when the
// controllers exist.
func (r *Recorder) WatchStates(s States) {
	if r == nil {
		return
	}
	r.reg.MustRegister(&stateCollector{
		s:          s,
		pods:       prometheus.NewDesc(namespace+"_pods", "Pod sandboxes by state (creating, ready, notready).", []string{"state"}, nil),
		containers: prometheus.NewDesc(namespace+"_containers", "Containers by state (creating, created, running, exited, unknown).", []string{"state"}, nil),
		shims:      prometheus.NewDesc(namespace+"_shims", "Shim processes the daemon is connected to (one per pod whose shim lives).", nil, nil),
	})
}

type stateCollector struct {
	s                       States
	pods, containers, shims *prometheus.Desc
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pods
	ch <- c.containers
	ch <- c.shims
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	emit := func(desc *prometheus.Desc, counts map[string]int) {
		for state, n := range counts {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(n), state)
		}
	}
	if c.s.Pods != nil {
		emit(c.pods, c.s.Pods())
	}
	if c.s.Containers != nil {
		emit(c.containers, c.s.Containers())
	}
	if c.s.Shims != nil {
		ch <- prometheus.MustNewConstMetric(c.shims, prometheus.GaugeValue, float64(c.s.Shims()))
	}
}
