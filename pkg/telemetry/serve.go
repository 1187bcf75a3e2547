package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"
)

// MetricsServer serves /metrics over plain HTTP.
type MetricsServer struct {
	srv  *http.Server
	lis  net.Listener
	done chan struct{}
}

// ServeMetrics listens on addr (host:port) and serves the Recorder's
// registry at /metrics until Close.
func (r *Recorder) ServeMetrics(addr string) (*MetricsServer, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.address %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		ErrorLog: promErrorLog{},
		// A slow scrape must not pile up goroutines.
		MaxRequestsInFlight: 4,
		Timeout:             30 * time.Second,
	}))
	m := &MetricsServer{
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
		},
		lis:  lis,
		done: make(chan struct{}),
	}
	go func() {
		defer close(m.done)
		if err := m.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Metrics server stopped", "address", addr)
		}
	}()
	klog.InfoS("Serving metrics", "address", lis.Addr().String())
	return m, nil
}

// Addr is the address served (the real port when addr asked for 0).
func (m *MetricsServer) Addr() string { return m.lis.Addr().String() }

// Close stops the server and waits for it.
func (m *MetricsServer) Close(ctx context.Context) error {
	err := m.srv.Shutdown(ctx)
	<-m.done
	return err
}

type promErrorLog struct{}

func (promErrorLog) Println(v ...any) { klog.ErrorS(nil, "Serving metrics", "err", fmt.Sprint(v...)) }
