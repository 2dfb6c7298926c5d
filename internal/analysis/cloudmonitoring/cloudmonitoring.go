// Package cloudmonitoring reads the Google Cloud HTTPS load balancer's metrics of the
// migration's backends from Cloud Monitoring (the Monitoring API v3 over gRPC).
package cloudmonitoring

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	monitoring "cloud.google.com/go/monitoring/apiv3/v2"
	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mastodon-operator/mastodon-operator/internal/analysis"
)

// The load balancer's metrics.
const (
	RequestCount   = "loadbalancing.googleapis.com/https/request_count"
	TotalLatencies = "loadbalancing.googleapis.com/https/total_latencies"
	resourceType   = "https_lb_rule"
)

// MinWindow is the shortest window measured: the load balancer writes its metrics once a
// minute, and they arrive a little late.
const MinWindow = 2 * time.Minute

// Config says which series are the migration's.
type Config struct {
	ProjectID string
	// Namespace and Services name the backends: GKE names a NEG backend
	// k8s1-<hex>-<namespace>-<service>-<port>-<hex> (names too long for that are truncated by
	// GKE: set Filter then).
	Namespace string
	Services  []string
	// Filter is ANDed to the series filter.
	Filter string
}

// Provider reads Cloud Monitoring.
type Provider struct {
	client *monitoring.MetricClient
	cfg    Config
}

// New connects to Cloud Monitoring with the ambient credentials, or opts.
func New(ctx context.Context, cfg Config, opts ...option.ClientOption) (*Provider, error) {
	if cfg.ProjectID == "" {
		return nil, errors.New("no project: set analysis.cloudMonitoring.projectID")
	}
	c, err := monitoring.NewMetricClient(ctx, opts...)
	if err != nil {
		return nil, err
	}
	return &Provider{client: c, cfg: cfg}, nil
}

// Name implements analysis.Provider.
func (p *Provider) Name() string { return "cloudMonitoring" }

// Close releases the connection.
func (p *Provider) Close() error { return p.client.Close() }

// Filter is the time series filter of a metric for the configured backends.
func (p *Provider) Filter(metric string) string {
	parts := []string{fmt.Sprintf("metric.type = %q", metric), fmt.Sprintf("resource.type = %q", resourceType)}
	var backends []string
	for _, s := range p.cfg.Services {
		re := "k8s1-[0-9a-f]+-" + regexp.QuoteMeta(p.cfg.Namespace+"-"+s) + "-[0-9]+-[0-9a-f]+"
		backends = append(backends, fmt.Sprintf("resource.labels.backend_target_name = monitoring.regex.full_match(%q)", re))
	}
	if len(backends) > 0 {
		parts = append(parts, "("+strings.Join(backends, " OR ")+")")
	}
	if p.cfg.Filter != "" {
		parts = append(parts, "("+p.cfg.Filter+")")
	}
	return strings.Join(parts, " AND ")
}

// Measure reads the requests by response code class (the 5xx share is the error rate) and the
// 95th percentile of the total latency over the window ending now.
func (p *Provider) Measure(ctx context.Context, interval time.Duration) (analysis.Measurement, error) {
	var m analysis.Measurement
	window := max(interval, MinWindow)
	end := time.Now()
	ti := &monitoringpb.TimeInterval{StartTime: timestamppb.New(end.Add(-window)), EndTime: timestamppb.New(end)}
	counts, err := p.list(ctx, RequestCount, ti, &monitoringpb.Aggregation{
		AlignmentPeriod: durationpb.New(window), PerSeriesAligner: monitoringpb.Aggregation_ALIGN_DELTA,
		CrossSeriesReducer: monitoringpb.Aggregation_REDUCE_SUM, GroupByFields: []string{"metric.label.response_code_class"},
	})
	if err != nil {
		return m, fmt.Errorf("request_count: %w", err)
	}
	var total, failed float64
	for _, ts := range counts {
		n := sumPoints(ts)
		total += n
		if ts.GetMetric().GetLabels()["response_code_class"] == "500" {
			failed += n
		}
	}
	if total > 0 {
		rate := failed / total
		m.ErrorRate, m.Requests = &rate, total
	}
	latencies, err := p.list(ctx, TotalLatencies, ti, &monitoringpb.Aggregation{
		AlignmentPeriod: durationpb.New(window), PerSeriesAligner: monitoringpb.Aggregation_ALIGN_PERCENTILE_95,
		CrossSeriesReducer: monitoringpb.Aggregation_REDUCE_MAX,
	})
	if err != nil {
		return m, fmt.Errorf("total_latencies: %w", err)
	}
	for _, ts := range latencies {
		for _, pt := range ts.GetPoints() {
			ms := pt.GetValue().GetDoubleValue()
			if math.IsNaN(ms) {
				continue // no requests in the series
			}
			d := time.Duration(ms * float64(time.Millisecond))
			if m.Latency == nil || d > *m.Latency {
				m.Latency = &d
			}
		}
	}
	if m.ErrorRate == nil && m.Latency == nil {
		return m, fmt.Errorf("no load balancer requests to the backends over the last %s", window)
	}
	return m, nil
}

func (p *Provider) list(ctx context.Context, metric string, ti *monitoringpb.TimeInterval, agg *monitoringpb.Aggregation) ([]*monitoringpb.TimeSeries, error) {
	it := p.client.ListTimeSeries(ctx, &monitoringpb.ListTimeSeriesRequest{
		Name: "projects/" + p.cfg.ProjectID, Filter: p.Filter(metric), Interval: ti, Aggregation: agg,
		View: monitoringpb.ListTimeSeriesRequest_FULL,
	})
	var out []*monitoringpb.TimeSeries
	for {
		ts, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, ts)
	}
}

func sumPoints(ts *monitoringpb.TimeSeries) float64 {
	var n float64
	for _, pt := range ts.GetPoints() {
		switch v := pt.GetValue().GetValue().(type) {
		case *monitoringpb.TypedValue_Int64Value:
			n += float64(v.Int64Value)
		case *monitoringpb.TypedValue_DoubleValue:
			n += v.DoubleValue
		}
	}
	return n
}
