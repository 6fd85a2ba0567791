package collect

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type metrics struct {
	received        prometheus.Counter
	inserted        *prometheus.CounterVec
	duplicates      prometheus.Counter
	raw             *prometheus.CounterVec
	dbErrors        prometheus.Counter
	connected       prometheus.Gauge
	connectFailures *prometheus.CounterVec
	batchSeconds    prometheus.Histogram
	batchSize       prometheus.Histogram
	lag             prometheus.Histogram
	rollupSeconds   prometheus.Histogram
	rollupCells     prometheus.Counter
	rollupErrors    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		received: prometheus.NewCounter(prometheus.CounterOpts{Name: "edge_collect_messages_received_total",
			Help: "Stats messages received from the broker (redeliveries included)."}),
		inserted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edge_collect_rows_inserted_total",
			Help: "Window rows inserted into edge_windows, by kind."}, []string{"kind"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "edge_collect_duplicates_total",
			Help: "Windows received that were already stored (redeliveries, replays)."}),
		raw: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edge_collect_raw_stored_total",
			Help: "Messages kept in edge_raw_messages instead of edge_windows, by reason."}, []string{"reason"}),
		dbErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "edge_collect_db_errors_total",
			Help: "Failed batch writes (each retried until it commits)."}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Name: "edge_collect_broker_connected",
			Help: "1 while connected and subscribed to the broker."}),
		connectFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edge_collect_connect_failures_total",
			Help: "Failed broker connection attempts, by cause (bad_credentials, not_authorized, tls, unreachable, …)."}, []string{"cause"}),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "edge_collect_batch_seconds",
			Help: "Time to write and commit one batch.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "edge_collect_batch_messages",
			Help: "Messages per committed batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "edge_collect_window_lag_seconds",
			Help:    "From a window's end to its commit (device queueing, broker, bridge, collector).",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 14)}),
		rollupSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "edge_collect_rollup_seconds",
			Help: "Time of one roll-up refresh.", Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14)}),
		rollupCells: prometheus.NewCounter(prometheus.CounterOpts{Name: "edge_collect_rollup_cells_total",
			Help: "Department-hours recomputed by roll-up refreshes."}),
		rollupErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "edge_collect_rollup_errors_total",
			Help: "Failed roll-up refreshes."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.received, m.inserted, m.duplicates, m.raw, m.dbErrors, m.connected, m.connectFailures,
		m.batchSeconds, m.batchSize, m.lag, m.rollupSeconds, m.rollupCells, m.rollupErrors} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("collect: metrics already registered (one collector per registry): %w", err)
			}
			return nil, fmt.Errorf("collect: register metrics: %w", err)
		}
	}
	return m, nil
}

// NewMux returns the collector's HTTP handlers: /metrics (from g) and
// /healthz (200 "ok", or 503 with the reason). Callers add their own, e.g.
// the dashboard under "/".
func NewMux(c *Collector, g prometheus.Gatherer) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := c.Healthy(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "degraded:", err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}
