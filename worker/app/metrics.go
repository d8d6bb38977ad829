package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.temporal.io/sdk/client"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"

	"github.com/stagehand-dev/stagehand/workflows"
)

// Metrics serves the worker's Prometheus endpoint: the Temporal SDK's own
// metrics (temporal_*: polls, task latencies, activity and workflow
// outcomes) and Stagehand's (stagehand_*, see workflows/metrics.go), both
// recorded through Handler, which the Temporal client is given.
type Metrics struct {
	// Handler is the client's MetricsHandler; workflows reach it through
	// workflow.GetMetricsHandler.
	Handler client.MetricsHandler
	// Addr is the address actually listened on (useful with port 0).
	Addr     string
	provider *sdkmetric.MeterProvider
	server   *http.Server
	done     chan struct{}
}

// stepBuckets (seconds) span a quick kube.getImage to an image build or a
// rollout of an hour; gateBuckets span minutes to the weeks a gate may wait.
var (
	stepBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}
	gateBuckets = []float64{60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400, 14 * 86400}
)

// secondsBuckets gives every histogram in seconds (the SDK's timers and
// ours) buckets for seconds: one view, so no instrument matches twice.
func secondsBuckets(i sdkmetric.Instrument) (sdkmetric.Stream, bool) {
	if i.Kind != sdkmetric.InstrumentKindHistogram || i.Unit != "s" {
		return sdkmetric.Stream{}, false
	}
	b := stepBuckets
	if i.Name == workflows.MetricGateWait {
		b = gateBuckets
	}
	return sdkmetric.Stream{Name: i.Name, Description: i.Description, Unit: i.Unit,
		Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: b}}, true
}

// StartMetrics listens on listen (host:port) at once, so a port in use stops
// the worker at start-up rather than going unnoticed, and serves GET
// /metrics until Close.
func StartMetrics(listen string, logger *slog.Logger) (*Metrics, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, fmt.Errorf("metrics: prometheus exporter: %w", err)
	}
	// OpenTelemetry's default buckets are for milliseconds; the SDK's timers
	// and ours record seconds.
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter),
		sdkmetric.WithView(secondsBuckets))
	handler := temporalotel.NewMetricsHandler(temporalotel.MetricsHandlerOptions{
		Meter: provider.Meter("stagehand-worker"),
		// Counters are monotonic, so Prometheus sees counters (_total), not
		// gauges, and rate() works.
		UseMonotonicCounters: true,
		// The default panics; a metric that cannot be recorded must not stop
		// a workflow task.
		OnError: func(err error) { logger.Warn("metric not recorded", "error", err) },
	})
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		_ = provider.Shutdown(context.Background())
		return nil, fmt.Errorf("metrics.listen %s: %w", listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}))
	m := &Metrics{
		Handler:  handler,
		Addr:     ln.Addr().String(),
		provider: provider,
		server:   &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		done:     make(chan struct{}),
	}
	go func() {
		defer close(m.done)
		if err := m.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics endpoint stopped", "listen", listen, "error", err)
		}
	}()
	logger.Info("serving Prometheus metrics", "url", "http://"+m.Addr+"/metrics")
	return m, nil
}

// handler is the client's MetricsHandler, nil (the SDK's no-op) when
// metrics are off.
func (m *Metrics) handler() client.MetricsHandler {
	if m == nil {
		return nil
	}
	return m.Handler
}

// close is Close on a possibly nil *Metrics (metrics off).
func (m *Metrics) close() {
	if m != nil {
		m.Close()
	}
}

// Close stops the endpoint and the meter provider.
func (m *Metrics) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = m.server.Shutdown(ctx)
	<-m.done
	_ = m.provider.Shutdown(ctx)
}
