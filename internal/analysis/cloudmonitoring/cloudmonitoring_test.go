package cloudmonitoring

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	monitoring "cloud.google.com/go/monitoring/apiv3/v2"
	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/genproto/googleapis/api/distribution"
	"google.golang.org/genproto/googleapis/api/metric"
	"google.golang.org/genproto/googleapis/api/monitoredres"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mastodon-operator/mastodon-operator/internal/analysis"
	"github.com/mastodon-operator/mastodon-operator/internal/analysis/cloudmonitoring/monitoringtest"
)

const (
	project = "my-project"
	urlMap  = "k8s2-um-0a1b2c3d-social-mastodon-x1y2z3w4"
)

// neg is the backend service GKE makes for a Service's NEG, when the names are short enough
// not to be cut.
func neg(namespace, service string) string {
	return "k8s1-0a1b2c3d-" + namespace + "-" + service + "-80-9f8e7d6c"
}

// The load balancer's latency buckets: exponential, from 1 ms by a factor of 1.4.
var lbBuckets = &distribution.Distribution_BucketOptions{Options: &distribution.Distribution_BucketOptions_ExponentialBuckets{
	ExponentialBuckets: &distribution.Distribution_BucketOptions_Exponential{NumFiniteBuckets: 66, GrowthFactor: 1.4, Scale: 1}}}

// traffic is a minute of a backend's load balancer metrics.
type traffic struct {
	project, urlMap string
	// requests by response code class.
	requests map[string]int64
	// latencies: how many requests took so many ms.
	latencies map[float64]int64
}

// write stores traffic that ended at `at` through the real client, as the load balancer does.
func write(t *testing.T, c *monitoring.MetricClient, backend string, at time.Time, tr traffic) {
	t.Helper()
	if tr.project == "" {
		tr.project = project
	}
	if tr.urlMap == "" {
		tr.urlMap = urlMap
	}
	res := &monitoredres.MonitoredResource{Type: "https_lb_rule", Labels: map[string]string{
		"project_id": tr.project, "url_map_name": tr.urlMap, "backend_target_name": backend, "backend_type": "NETWORK_ENDPOINT_GROUP"}}
	interval := &monitoringpb.TimeInterval{StartTime: timestamppb.New(at.Add(-time.Minute)), EndTime: timestamppb.New(at)}
	var series []*monitoringpb.TimeSeries
	for class, n := range tr.requests {
		series = append(series, &monitoringpb.TimeSeries{
			Metric:   &metric.Metric{Type: RequestCount, Labels: map[string]string{"response_code_class": class}},
			Resource: res, MetricKind: metric.MetricDescriptor_DELTA, ValueType: metric.MetricDescriptor_INT64,
			Points: []*monitoringpb.Point{{Interval: interval, Value: &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: n}}}},
		})
	}
	if len(tr.latencies) > 0 {
		d := &distribution.Distribution{BucketOptions: lbBuckets, BucketCounts: make([]int64, 68)}
		var sum float64
		for ms, n := range tr.latencies {
			d.BucketCounts[int(math.Floor(math.Log(ms)/math.Log(1.4)))+1] += n
			d.Count += n
			sum += ms * float64(n)
		}
		d.Mean = sum / float64(d.Count)
		series = append(series, &monitoringpb.TimeSeries{
			Metric: &metric.Metric{Type: TotalLatencies}, Resource: res,
			MetricKind: metric.MetricDescriptor_DELTA, ValueType: metric.MetricDescriptor_DISTRIBUTION,
			Points: []*monitoringpb.Point{{Interval: interval, Value: &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_DistributionValue{DistributionValue: d}}}},
		})
	}
	// One point per series and request, as the API wants.
	for _, ts := range series {
		req := &monitoringpb.CreateTimeSeriesRequest{Name: "projects/" + tr.project, TimeSeries: []*monitoringpb.TimeSeries{ts}}
		if err := c.CreateTimeSeries(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
}

// setup starts a local Cloud Monitoring, a client that writes to it, and a provider of cfg
// (by default the Services mastodon-web and mastodon-streaming of the namespace social).
func setup(t *testing.T, cfg Config) (*monitoringtest.Server, *monitoring.MetricClient, *Provider) {
	t.Helper()
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
	if cfg.ProjectID == "" {
		cfg.ProjectID = project
	}
	if cfg.Namespace == "" && cfg.Services == nil {
		cfg.Namespace, cfg.Services = "social", []string{"mastodon-web", "mastodon-streaming"}
	}
	p, err := New(ctx, cfg, srv.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return srv, writer, p
}

func TestErrorRateIsThe500ClassShareOfTheMigrationsBackends(t *testing.T) {
	srv, writer, p := setup(t, Config{})
	// The load balancer's samples show up minutes late: the last ones are 4 minutes old.
	at := time.Now().Add(-4 * time.Minute)
	write(t, writer, neg("social", "mastodon-web"), at, traffic{requests: map[string]int64{"200": 1400, "300": 30, "400": 50, "500": 20}})
	write(t, writer, neg("social", "mastodon-streaming"), at, traffic{requests: map[string]int64{"100": 480, "500": 20}})
	// Not the migration's: another Service of the namespace, a Service of another namespace
	// whose backend's name contains ours, another project, and traffic older than the window.
	write(t, writer, neg("social", "mastodon-media-proxy"), at, traffic{requests: map[string]int64{"500": 5000}})
	write(t, writer, neg("other", "social-mastodon-web"), at, traffic{requests: map[string]int64{"500": 5000}})
	write(t, writer, neg("social", "mastodon-web"), at, traffic{project: "another-project", requests: map[string]int64{"500": 5000}})
	write(t, writer, neg("social", "mastodon-web"), time.Now().Add(-time.Hour), traffic{requests: map[string]int64{"500": 5000}})

	m, err := p.Measure(context.Background(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.ErrorRate == nil || *m.ErrorRate != 0.02 || m.Requests != 2000 {
		t.Fatalf("measured %v requests at an error rate of %v, want 2000 at 0.02 (40 in the 500 class)", m.Requests, ptr(m.ErrorRate))
	}
	if m.Latency != nil {
		t.Fatalf("latency %s measured without a latency series", *m.Latency)
	}
	if m.Provider != "cloudMonitoring" {
		t.Fatalf("provider %q", m.Provider)
	}

	reqs := srv.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d ListTimeSeries requests, want one per metric", len(reqs))
	}
	for i, metricType := range []string{RequestCount, TotalLatencies} {
		r := reqs[i]
		f := r.GetFilter()
		for _, want := range []string{`metric.type = "` + metricType + `"`, `resource.type = "https_lb_rule"`, "-(social-mastodon-web)-", "-(social-mastodon-streaming)-"} {
			if !strings.Contains(f, want) {
				t.Errorf("the %s filter lacks %s: %s", metricType, want, f)
			}
		}
		window := r.GetInterval().GetEndTime().AsTime().Sub(r.GetInterval().GetStartTime().AsTime())
		if window != MinWindow || r.GetAggregation().GetAlignmentPeriod().AsDuration() != window {
			t.Errorf("window %s aligned over %s, want both %s", window, r.GetAggregation().GetAlignmentPeriod().AsDuration(), MinWindow)
		}
	}
}

func TestMostlyFailingBackends(t *testing.T) {
	_, writer, p := setup(t, Config{})
	write(t, writer, neg("social", "mastodon-web"), time.Now().Add(-time.Minute), traffic{requests: map[string]int64{"200": 40, "500": 60}})
	m, err := p.Measure(context.Background(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.ErrorRate == nil || *m.ErrorRate != 0.6 || m.Requests != 100 {
		t.Fatalf("error rate %v over %v requests, want 0.6 over 100", ptr(m.ErrorRate), m.Requests)
	}
}

func TestANightsFewRequestsAreCountedAndNotJudged(t *testing.T) {
	_, writer, p := setup(t, Config{})
	write(t, writer, neg("social", "mastodon-web"), time.Now().Add(-2*time.Minute), traffic{
		requests: map[string]int64{"200": 2, "500": 1}, latencies: map[float64]int64{40: 2, 9000: 1}})
	m, err := p.Measure(context.Background(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.ErrorRate == nil || math.Abs(*m.ErrorRate-1.0/3) > 1e-9 || m.Requests != 3 {
		t.Fatalf("error rate %v over %v requests, want 1/3 over 3", ptr(m.ErrorRate), m.Requests)
	}
	r := analysis.Evaluate(analysis.DefaultThresholds(), analysis.Baseline{}, []analysis.Measurement{m}, nil, analysis.State{}, time.Now())
	if r.Verdict != analysis.Inconclusive || len(r.Breaches) > 0 {
		t.Fatalf("one 5xx in 3 requests: verdict %s, breaches %v; want Inconclusive", r.Verdict, r.Breaches)
	}
	if got := analysis.Describe(r); got != "too few requests to judge (fewer than 50): cloudMonitoring counted 3" {
		t.Fatalf("described as %q", got)
	}
}

func TestLatencyIsThe95thPercentileOfAllTheBackendsRequests(t *testing.T) {
	_, writer, p := setup(t, Config{})
	at := time.Now().Add(-3 * time.Minute)
	write(t, writer, neg("social", "mastodon-web"), at, traffic{
		requests: map[string]int64{"200": 960}, latencies: map[float64]int64{30: 900, 200: 60}})
	// Streaming's connections last as long as the clients stay: few, they do not make the
	// percentile theirs, as the worst backend's percentile would.
	write(t, writer, neg("social", "mastodon-streaming"), at, traffic{
		requests: map[string]int64{"100": 40}, latencies: map[float64]int64{600000: 40}})
	m, err := p.Measure(context.Background(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// The 950th of 1000 latencies is the 50th of the 60 in the bucket [1.4^15, 1.4^16) ms.
	lower, upper := math.Pow(1.4, 15), math.Pow(1.4, 16)
	want := time.Duration((lower + (upper-lower)*50/60) * float64(time.Millisecond))
	if m.Latency == nil || (*m.Latency-want).Abs() > time.Millisecond {
		t.Fatalf("p95 latency %v, want %s", ptr(m.Latency), want)
	}
	if m.ErrorRate == nil || *m.ErrorRate != 0 || m.Requests != 1000 {
		t.Fatalf("error rate %v over %v requests, want 0 over 1000", ptr(m.ErrorRate), m.Requests)
	}
}

func TestTheWindowIsTheIntervalWhenLongerThanMinWindow(t *testing.T) {
	_, writer, p := setup(t, Config{})
	write(t, writer, neg("social", "mastodon-web"), time.Now().Add(-8*time.Minute), traffic{requests: map[string]int64{"200": 90, "500": 10}})
	if m, err := p.Measure(context.Background(), 30*time.Second); err == nil {
		t.Fatalf("traffic 8 minutes old measured in the minimum window: %+v", m)
	}
	m, err := p.Measure(context.Background(), 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if m.ErrorRate == nil || *m.ErrorRate != 0.1 {
		t.Fatalf("error rate %v over 10 minutes, want 0.1", ptr(m.ErrorRate))
	}
}

func TestTheFilterIsANDed(t *testing.T) {
	_, writer, p := setup(t, Config{Filter: `resource.labels.url_map_name = "` + urlMap + `"`})
	at := time.Now().Add(-2 * time.Minute)
	write(t, writer, neg("social", "mastodon-web"), at, traffic{requests: map[string]int64{"200": 95, "500": 5}})
	// The same backends behind another load balancer.
	write(t, writer, neg("social", "mastodon-web"), at, traffic{urlMap: "k8s2-um-staging", requests: map[string]int64{"500": 100}})
	m, err := p.Measure(context.Background(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.ErrorRate == nil || *m.ErrorRate != 0.05 || m.Requests != 100 {
		t.Fatalf("error rate %v over %v requests, want 0.05 over 100", ptr(m.ErrorRate), m.Requests)
	}
}

func TestBackendsWhoseNamesGKECut(t *testing.T) {
	// namespace, name and port are 41 characters: GKE cuts them to 38 (ingress-gce's namer).
	_, writer, p := setup(t, Config{Namespace: "mastodon-production", Services: []string{"mastodon-streaming"}})
	write(t, writer, "k8s1-0a1b2c3d-mastodon-productio-mastodon-streamin-400-1b2c3d4e", time.Now().Add(-2*time.Minute),
		traffic{requests: map[string]int64{"100": 90, "500": 10}})
	m, err := p.Measure(context.Background(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.ErrorRate == nil || *m.ErrorRate != 0.1 {
		t.Fatalf("error rate %v, want 0.1", ptr(m.ErrorRate))
	}
}

func TestNoRequestsIsNoData(t *testing.T) {
	_, writer, p := setup(t, Config{})
	if m, err := p.Measure(context.Background(), 30*time.Second); err == nil {
		t.Fatalf("no series measured %+v", m)
	}
	// Series, but no request in them.
	write(t, writer, neg("social", "mastodon-web"), time.Now().Add(-2*time.Minute), traffic{requests: map[string]int64{"500": 0}})
	m, err := p.Measure(context.Background(), 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "no load balancer requests") {
		t.Fatalf("no requests measured %+v, %v", m, err)
	}
}

func TestCloudMonitoringDownIsNoData(t *testing.T) {
	srv, _, p := setup(t, Config{})
	srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if m, err := p.Measure(ctx, 30*time.Second); err == nil {
		t.Fatalf("a Cloud Monitoring that is down measured %+v", m)
	}
}

func TestNewWantsTheBackendsScoped(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no project":                   {Namespace: "social", Services: []string{"mastodon-web"}},
		"nothing selects backends":     {ProjectID: project, Namespace: "social"},
		"Services without a namespace": {ProjectID: project, Services: []string{"mastodon-web"}},
		"a Service without a name":     {ProjectID: project, Namespace: "social", Services: []string{""}},
	} {
		if _, err := New(context.Background(), cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

func ptr[T any](p *T) any {
	if p == nil {
		return "nil"
	}
	return *p
}
