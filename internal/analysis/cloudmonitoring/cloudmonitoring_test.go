package cloudmonitoring

import (
	"context"
	"strings"
	"testing"
	"time"

	monitoring "cloud.google.com/go/monitoring/apiv3/v2"
	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/genproto/googleapis/api/distribution"
	"google.golang.org/genproto/googleapis/api/metric"
	"google.golang.org/genproto/googleapis/api/monitoredres"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mastodon-operator/mastodon-operator/internal/analysis/cloudmonitoring/monitoringtest"
)

const project = "my-project"

// backend is the NEG backend GKE names after a Service.
func backend(namespace, service string) string {
	return "k8s1-0a1b2c3d-" + namespace + "-" + service + "-80-9f8e7d6c"
}

func resource(backendName string) *monitoredres.MonitoredResource {
	return &monitoredres.MonitoredResource{Type: "https_lb_rule", Labels: map[string]string{
		"project_id": project, "url_map_name": "k8s2-um-mastodon", "backend_target_name": backendName}}
}

// write stores a minute of load balancer traffic through the real client: requests per response
// code class, and their latencies in ms as a distribution with explicit buckets.
func write(t *testing.T, c *monitoring.MetricClient, backendName string, at time.Time, byClass map[string]int64, latencies map[float64]int64) {
	t.Helper()
	interval := &monitoringpb.TimeInterval{StartTime: timestamppb.New(at.Add(-time.Minute)), EndTime: timestamppb.New(at)}
	var series []*monitoringpb.TimeSeries
	for class, n := range byClass {
		series = append(series, &monitoringpb.TimeSeries{
			Metric:   &metric.Metric{Type: RequestCount, Labels: map[string]string{"response_code_class": class}},
			Resource: resource(backendName), MetricKind: metric.MetricDescriptor_DELTA, ValueType: metric.MetricDescriptor_INT64,
			Points: []*monitoringpb.Point{{Interval: interval, Value: &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: n}}}},
		})
	}
	bounds := []float64{10, 50, 100, 250, 500, 1000}
	counts := make([]int64, len(bounds)+1)
	var total int64
	for ms, n := range latencies {
		i := 0
		for i < len(bounds) && ms >= bounds[i] {
			i++
		}
		counts[i] += n
		total += n
	}
	series = append(series, &monitoringpb.TimeSeries{
		Metric: &metric.Metric{Type: TotalLatencies}, Resource: resource(backendName),
		MetricKind: metric.MetricDescriptor_DELTA, ValueType: metric.MetricDescriptor_DISTRIBUTION,
		Points: []*monitoringpb.Point{{Interval: interval, Value: &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_DistributionValue{
			DistributionValue: &distribution.Distribution{Count: total, BucketCounts: counts, BucketOptions: &distribution.Distribution_BucketOptions{
				Options: &distribution.Distribution_BucketOptions_ExplicitBuckets{ExplicitBuckets: &distribution.Distribution_BucketOptions_Explicit{Bounds: bounds}}}},
		}}}},
	})
	if err := c.CreateTimeSeries(context.Background(), &monitoringpb.CreateTimeSeriesRequest{Name: "projects/" + project, TimeSeries: series}); err != nil {
		t.Fatal(err)
	}
}

func setup(t *testing.T) (*monitoringtest.Server, *monitoring.MetricClient, *Provider) {
	srv, err := monitoringtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ctx := context.Background()
	writer, err := monitoring.NewMetricClient(ctx, srv.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = writer.Close() })
	p, err := New(ctx, Config{ProjectID: project, Namespace: "social", Services: []string{"mastodon-web", "mastodon-streaming"}}, srv.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return srv, writer, p
}

func TestErrorRateAndLatencyOfTheMigrationsBackends(t *testing.T) {
	srv, writer, p := setup(t)
	now := time.Now()
	write(t, writer, backend("social", "mastodon-web"), now.Add(-30*time.Second),
		map[string]int64{"200": 940, "300": 20, "400": 20, "500": 20}, map[float64]int64{30: 900, 200: 100})
	write(t, writer, backend("social", "mastodon-streaming"), now.Add(-30*time.Second),
		map[string]int64{"200": 1000}, map[float64]int64{5: 1000})
	// Not the migration's: another Service, and a backend whose name only contains ours.
	write(t, writer, backend("social", "mastodon-media-proxy"), now.Add(-30*time.Second), map[string]int64{"500": 5000}, map[float64]int64{900: 5000})
	write(t, writer, backend("other", "social-mastodon-web"), now.Add(-30*time.Second), map[string]int64{"500": 5000}, nil)
	// Too old for the window.
	write(t, writer, backend("social", "mastodon-web"), now.Add(-time.Hour), map[string]int64{"500": 5000}, nil)

	m, err := p.Measure(context.Background(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.Requests != 2000 || *m.ErrorRate != 0.01 {
		t.Fatalf("measured %v requests at an error rate of %v, want 2000 at 0.01 (20 5xx)", m.Requests, *m.ErrorRate)
	}
	// p95 of 2000 latencies: rank 1900, the 100 slow ones in the 100-250 ms bucket, up to 250 ms.
	if *m.Latency < 100*time.Millisecond || *m.Latency > 250*time.Millisecond {
		t.Fatalf("p95 latency %s, want it in the 100-250ms bucket", *m.Latency)
	}
	for _, req := range srv.Requests() {
		if !strings.Contains(req.GetFilter(), `k8s1-[0-9a-f]+-social-mastodon-web-[0-9]+-`) || !strings.Contains(req.GetFilter(), `k8s1-[0-9a-f]+-social-mastodon-streaming-[0-9]+-`) {
			t.Fatalf("the filter does not scope to the migration's Services: %s", req.GetFilter())
		}
	}
}

func TestMostlyFailingBackends(t *testing.T) {
	_, writer, p := setup(t)
	write(t, writer, backend("social", "mastodon-web"), time.Now().Add(-10*time.Second), map[string]int64{"200": 40, "500": 60}, nil)
	m, err := p.Measure(context.Background(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if *m.ErrorRate != 0.6 || m.Latency != nil {
		t.Fatalf("error rate %v, latency %v: want 0.6 and no latency", *m.ErrorRate, m.Latency)
	}
}

func TestNoSeriesIsNoData(t *testing.T) {
	_, _, p := setup(t)
	if m, err := p.Measure(context.Background(), 30*time.Second); err == nil {
		t.Fatalf("no series measured %+v", m)
	}
}

func TestServerDownIsNoData(t *testing.T) {
	srv, _, p := setup(t)
	srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.Measure(ctx, 30*time.Second); err == nil {
		t.Fatal("a Cloud Monitoring that is down measured")
	}
}
