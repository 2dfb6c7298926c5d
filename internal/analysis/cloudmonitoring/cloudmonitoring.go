// Package cloudmonitoring reads the Google Cloud external Application Load Balancer's metrics of
// the migration's backends from Cloud Monitoring (the Monitoring API v3, over gRPC).
package cloudmonitoring

import (
	"context"
	"errors"
	"fmt"
	"time"

	monitoring "cloud.google.com/go/monitoring/apiv3/v2"
	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mastodon-operator/mastodon-operator/internal/analysis"
)

// The load balancer's metrics, and the monitored resource they are written for.
const (
	RequestCount   = "loadbalancing.googleapis.com/https/request_count"
	TotalLatencies = "loadbalancing.googleapis.com/https/total_latencies"
	resourceType   = "https_lb_rule"
)

// MinWindow is the shortest window measured. The load balancer samples its metrics every 60 s
// and a sample becomes visible up to 210 s later, so a shorter window ending now is often
// empty, which would hold the migration as inconclusive.
const MinWindow = 5 * time.Minute

// measureTimeout bounds a measurement: the client retries an unreachable Cloud Monitoring for
// up to 90 s otherwise, and that is no data anyway.
const measureTimeout = 30 * time.Second

// latencyQuantile is the quantile of the total latency measured.
const latencyQuantile = 0.95

// Config says which series are the migration's.
type Config struct {
	ProjectID string
	// Namespace and Services name the backends: the backend services GKE makes for the Services'
	// NEGs (see backendPattern).
	Namespace string
	Services  []string
	// Filter, when set, is ANDed to the filter of the series: to narrow them further (a URL
	// map, a forwarding rule), or to select the backends alone when Services is empty.
	Filter string
}

// Provider reads Cloud Monitoring.
type Provider struct {
	client *monitoring.MetricClient
	cfg    Config
}

// New connects to Cloud Monitoring with the ambient credentials, or as opts say.
func New(ctx context.Context, cfg Config, opts ...option.ClientOption) (*Provider, error) {
	if cfg.ProjectID == "" {
		return nil, errors.New("no project ID")
	}
	// Every load balancer of the project otherwise: not the migration's traffic.
	if len(cfg.Services) == 0 && cfg.Filter == "" {
		return nil, errors.New("no Service and no filter select the migration's backends")
	}
	if len(cfg.Services) > 0 && cfg.Namespace == "" {
		return nil, errors.New("no namespace for the Services")
	}
	for _, s := range cfg.Services {
		if s == "" {
			return nil, errors.New("a Service without a name")
		}
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

// Measure reads, over the window of max(interval, MinWindow) ending now, the requests by
// response code class (the 500 class's share is the error rate) and the 95th percentile of
// the total latency of all the backends' requests together.
func (p *Provider) Measure(ctx context.Context, interval time.Duration) (analysis.Measurement, error) {
	ctx, cancel := context.WithTimeout(ctx, measureTimeout)
	defer cancel()
	m := analysis.Measurement{Provider: p.Name()}
	// Whole seconds: the window is the alignment period too.
	window := max(interval, MinWindow).Truncate(time.Second)
	end := time.Now()
	ti := &monitoringpb.TimeInterval{StartTime: timestamppb.New(end.Add(-window)), EndTime: timestamppb.New(end)}

	var total, failed float64
	err := p.list(ctx, RequestCount, ti, []string{"metric.label.response_code_class"}, func(ts *monitoringpb.TimeSeries) error {
		for _, pt := range ts.GetPoints() {
			n := float64(pt.GetValue().GetInt64Value())
			total += n
			if ts.GetMetric().GetLabels()["response_code_class"] == "500" {
				failed += n
			}
		}
		return nil
	})
	if err != nil {
		return analysis.Measurement{}, fmt.Errorf("request_count: %w", err)
	}
	if total > 0 {
		rate := failed / total
		m.ErrorRate, m.Requests = &rate, total
	}

	var latencies histogram
	err = p.list(ctx, TotalLatencies, ti, nil, func(ts *monitoringpb.TimeSeries) error {
		for _, pt := range ts.GetPoints() {
			if err := latencies.add(pt.GetValue().GetDistributionValue()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return analysis.Measurement{}, fmt.Errorf("total_latencies: %w", err)
	}
	if latencies.count > 0 {
		ms := latencies.quantile(latencyQuantile)
		d := time.Duration(ms * float64(time.Millisecond))
		m.Latency = &d
		// A latency alone is over the requests it counts.
		m.Requests = max(m.Requests, float64(latencies.count))
	}

	if m.ErrorRate == nil && m.Latency == nil {
		return analysis.Measurement{}, fmt.Errorf("no load balancer requests to the backends in the last %s", window)
	}
	return m, nil
}

// list reads metric over ti, each series' points added up over the whole window (ALIGN_DELTA)
// and the series summed across the backends (REDUCE_SUM), one sum per value of groupBy. A
// distribution sums to one distribution, whose buckets are then the requests of all.
func (p *Provider) list(ctx context.Context, metric string, ti *monitoringpb.TimeInterval, groupBy []string, each func(*monitoringpb.TimeSeries) error) error {
	it := p.client.ListTimeSeries(ctx, &monitoringpb.ListTimeSeriesRequest{
		Name:     "projects/" + p.cfg.ProjectID,
		Filter:   p.filter(metric),
		Interval: ti,
		Aggregation: &monitoringpb.Aggregation{
			AlignmentPeriod:    durationpb.New(ti.GetEndTime().AsTime().Sub(ti.GetStartTime().AsTime())),
			PerSeriesAligner:   monitoringpb.Aggregation_ALIGN_DELTA,
			CrossSeriesReducer: monitoringpb.Aggregation_REDUCE_SUM,
			GroupByFields:      groupBy,
		},
		View: monitoringpb.ListTimeSeriesRequest_FULL,
	})
	for {
		ts, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := each(ts); err != nil {
			return err
		}
	}
}
