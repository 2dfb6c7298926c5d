// Package prometheus reads the error rate and the latency of the stack from a Prometheus HTTP
// API with PromQL, by default from ingress-nginx's metrics of the migration's Ingress.
package prometheus

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/mastodon-operator/mastodon-operator/internal/analysis"
)

// The default queries read ingress-nginx's metrics of one Ingress. ingress-nginx creates a
// status's series at its first response, so a healthy Ingress has no 5xx series at all: "or
// vector(0)" makes that a 0% error rate, while no traffic at all stays 0/0, not measured. Where
// the scrape sets namespace to the controller's own (a ServiceMonitor without honorLabels), the
// Ingress's namespace is in exported_namespace: such setups set their own queries.
const (
	DefaultErrorRateQuery = `(sum(rate(nginx_ingress_controller_requests{namespace="$namespace",ingress="$ingress",status=~"5.."}[$window])) or vector(0))` +
		` / sum(rate(nginx_ingress_controller_requests{namespace="$namespace",ingress="$ingress"}[$window]))`
	DefaultLatencyQuery = `histogram_quantile(0.95, sum by (le) (rate(nginx_ingress_controller_request_duration_seconds_bucket{namespace="$namespace",ingress="$ingress"}[$window])))`
	// DefaultRequestsQuery counts the requests the default error rate is over.
	DefaultRequestsQuery = `sum(increase(nginx_ingress_controller_requests{namespace="$namespace",ingress="$ingress"}[$window]))`
)

// DefaultMinWindow is the shortest $window by default: rate() needs two samples in its window,
// and metrics are commonly scraped every 15 s to 30 s.
const DefaultMinWindow = time.Minute

// queryTimeout bounds a measurement, so that a Prometheus that hangs is no data rather than a
// stuck caller.
const queryTimeout = 30 * time.Second

// Config is where Prometheus is and what to ask it.
type Config struct {
	// Address of the Prometheus server, such as http://prometheus.monitoring:9090.
	Address string
	// ErrorRateQuery (0 to 1) and LatencyQuery (seconds) replace the defaults. $namespace,
	// $ingress and $window are replaced in them by Namespace, Ingress and the measurement's
	// interval, at least MinWindow, as a PromQL duration (1m, 1m30s).
	ErrorRateQuery, LatencyQuery string
	// RequestsQuery counts the requests the error rate is over, which the analysis compares
	// with its minimum; DefaultRequestsQuery when empty.
	RequestsQuery      string
	Namespace, Ingress string
	// MinWindow is the shortest $window; DefaultMinWindow when zero. Keep it at least twice
	// (better four times) the scrape interval of the metrics, or rate() finds nothing.
	MinWindow time.Duration
}

// Provider queries Prometheus.
type Provider struct {
	api promv1.API
	cfg Config
}

var _ analysis.Provider = (*Provider)(nil)

// New makes a client of cfg.Address; nothing is sent until Measure.
func New(cfg Config) (*Provider, error) {
	if cfg.ErrorRateQuery == "" {
		cfg.ErrorRateQuery = DefaultErrorRateQuery
	}
	if cfg.LatencyQuery == "" {
		cfg.LatencyQuery = DefaultLatencyQuery
	}
	if cfg.RequestsQuery == "" {
		cfg.RequestsQuery = DefaultRequestsQuery
	}
	if cfg.MinWindow <= 0 {
		cfg.MinWindow = DefaultMinWindow
	}
	c, err := api.NewClient(api.Config{Address: cfg.Address})
	if err != nil {
		return nil, err
	}
	return &Provider{api: promv1.NewAPI(c), cfg: cfg}, nil
}

// Name implements analysis.Provider.
func (p *Provider) Name() string { return "prometheus" }

// Measure runs the queries for the same instant, over the interval (at least MinWindow). An
// empty result or NaN (no requests: 0/0) is not measured, not zero; when neither the error rate
// nor the latency gives a value there is no data. The requests query gives the measurement's
// Requests (0 when it finds none), which the analysis weighs the rate by.
func (p *Provider) Measure(ctx context.Context, interval time.Duration) (analysis.Measurement, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	window := p.window(interval)
	now := time.Now()
	m := analysis.Measurement{Provider: p.Name()}
	errorRate, err := p.value(ctx, p.query(p.cfg.ErrorRateQuery, window), now)
	if err != nil {
		return m, fmt.Errorf("error rate query: %w", err)
	}
	seconds, err := p.value(ctx, p.query(p.cfg.LatencyQuery, window), now)
	if err != nil {
		return m, fmt.Errorf("latency query: %w", err)
	}
	if errorRate == nil && seconds == nil {
		return m, fmt.Errorf("no samples over the last %s: no traffic, or the queries match no series", window)
	}
	requests, err := p.value(ctx, p.query(p.cfg.RequestsQuery, window), now)
	if err != nil {
		return m, fmt.Errorf("requests query: %w", err)
	}
	if requests != nil {
		m.Requests = *requests
	}
	m.ErrorRate = errorRate
	if seconds != nil {
		d := time.Duration(*seconds * float64(time.Second))
		m.Latency = &d
	}
	return m, nil
}

// window is the interval, at least MinWindow, as a PromQL duration in whole seconds.
func (p *Provider) window(interval time.Duration) string {
	return model.Duration(max(interval, p.cfg.MinWindow).Round(time.Second)).String()
}

func (p *Provider) query(q, window string) string {
	return strings.NewReplacer("$namespace", p.cfg.Namespace, "$ingress", p.cfg.Ingress, "$window", window).Replace(q)
}

// value returns the single value of an instant query at ts; nil when there is none.
func (p *Provider) value(ctx context.Context, q string, ts time.Time) (*float64, error) {
	v, _, err := p.api.Query(ctx, q, ts)
	if err != nil {
		return nil, err
	}
	var f float64
	switch v := v.(type) {
	case model.Vector:
		if len(v) == 0 {
			return nil, nil
		}
		if len(v) > 1 {
			return nil, fmt.Errorf("%d series, want one: aggregate the query, with sum() for instance", len(v))
		}
		f = float64(v[0].Value)
	case *model.Scalar:
		f = float64(v.Value)
	default:
		return nil, fmt.Errorf("a %s result, want a vector or a scalar", v.Type())
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, nil
	}
	return &f, nil
}
