package monitoringtest

import (
	"context"
	"errors"
	"testing"
	"time"

	monitoring "cloud.google.com/go/monitoring/apiv3/v2"
	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/api/iterator"
	"google.golang.org/genproto/googleapis/api/metric"
	"google.golang.org/genproto/googleapis/api/monitoredres"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const requests = "loadbalancing.googleapis.com/https/request_count"

func client(t *testing.T) *monitoring.MetricClient {
	t.Helper()
	srv, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	c, err := monitoring.NewMetricClient(context.Background(), srv.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// count writes n requests of class to backend, in the minute ending at `at`.
func count(t *testing.T, c *monitoring.MetricClient, backend, class string, at time.Time, n int64) {
	t.Helper()
	err := c.CreateTimeSeries(context.Background(), &monitoringpb.CreateTimeSeriesRequest{Name: "projects/p", TimeSeries: []*monitoringpb.TimeSeries{{
		Metric:     &metric.Metric{Type: requests, Labels: map[string]string{"response_code_class": class}},
		Resource:   &monitoredres.MonitoredResource{Type: "https_lb_rule", Labels: map[string]string{"backend_target_name": backend}},
		MetricKind: metric.MetricDescriptor_DELTA, ValueType: metric.MetricDescriptor_INT64,
		Points: []*monitoringpb.Point{{
			Interval: &monitoringpb.TimeInterval{StartTime: timestamppb.New(at.Add(-time.Minute)), EndTime: timestamppb.New(at)},
			Value:    &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: n}}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
}

func list(c *monitoring.MetricClient, req *monitoringpb.ListTimeSeriesRequest) ([]*monitoringpb.TimeSeries, error) {
	var out []*monitoringpb.TimeSeries
	it := c.ListTimeSeries(context.Background(), req)
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

func TestAlignsPerPeriodAndSumsByGroup(t *testing.T) {
	c := client(t)
	end := time.Now().Truncate(time.Second)
	count(t, c, "a", "200", end.Add(-30*time.Second), 10)
	count(t, c, "a", "200", end.Add(-90*time.Second), 20)
	count(t, c, "b", "200", end.Add(-100*time.Second), 5)
	count(t, c, "b", "500", end.Add(-10*time.Second), 1)
	count(t, c, "b", "500", end.Add(-10*time.Minute), 1000) // before the interval

	got, err := list(c, &monitoringpb.ListTimeSeriesRequest{
		Name:     "projects/p",
		Filter:   `metric.type = "` + requests + `" AND resource.label.backend_target_name = monitoring.regex.full_match("a|b")`,
		Interval: &monitoringpb.TimeInterval{StartTime: timestamppb.New(end.Add(-2 * time.Minute)), EndTime: timestamppb.New(end)},
		Aggregation: &monitoringpb.Aggregation{AlignmentPeriod: durationpb.New(time.Minute), PerSeriesAligner: monitoringpb.Aggregation_ALIGN_DELTA,
			CrossSeriesReducer: monitoringpb.Aggregation_REDUCE_SUM, GroupByFields: []string{"metric.label.response_code_class"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Per class, the sums of the minutes ending at end and at end-1m, newest first.
	want := map[string][]int64{"200": {10, 25}, "500": {1}}
	if len(got) != len(want) {
		t.Fatalf("%d series, want %d: %v", len(got), len(want), got)
	}
	for _, ts := range got {
		class := ts.GetMetric().GetLabels()["response_code_class"]
		if len(ts.GetResource().GetLabels()) != 0 || len(ts.GetMetric().GetLabels()) != 1 {
			t.Errorf("labels left after grouping by the class: %v %v", ts.GetMetric().GetLabels(), ts.GetResource().GetLabels())
		}
		var values []int64
		for _, p := range ts.GetPoints() {
			values = append(values, p.GetValue().GetInt64Value())
		}
		if len(values) != len(want[class]) || values[0] != want[class][0] || (len(values) > 1 && values[1] != want[class][1]) {
			t.Errorf("class %s: %v, want %v", class, values, want[class])
		}
	}
}

func TestRefusesWhatTheAPIRefuses(t *testing.T) {
	c := client(t)
	now := time.Now()
	interval := &monitoringpb.TimeInterval{StartTime: timestamppb.New(now.Add(-time.Hour)), EndTime: timestamppb.New(now)}
	metricType := `metric.type = "` + requests + `"`
	for name, tc := range map[string]struct {
		req  *monitoringpb.ListTimeSeriesRequest
		code codes.Code
	}{
		"no metric type":   {&monitoringpb.ListTimeSeriesRequest{Name: "projects/p", Filter: `resource.type = "https_lb_rule"`, Interval: interval}, codes.InvalidArgument},
		"two metric types": {&monitoringpb.ListTimeSeriesRequest{Name: "projects/p", Filter: metricType + ` OR metric.type = "x"`, Interval: interval}, codes.InvalidArgument},
		"no end time":      {&monitoringpb.ListTimeSeriesRequest{Name: "projects/p", Filter: metricType}, codes.InvalidArgument},
		"a short alignment period": {&monitoringpb.ListTimeSeriesRequest{Name: "projects/p", Filter: metricType, Interval: interval,
			Aggregation: &monitoringpb.Aggregation{AlignmentPeriod: durationpb.New(30 * time.Second), PerSeriesAligner: monitoringpb.Aggregation_ALIGN_DELTA}}, codes.InvalidArgument},
		"a reducer without an aligner": {&monitoringpb.ListTimeSeriesRequest{Name: "projects/p", Filter: metricType, Interval: interval,
			Aggregation: &monitoringpb.Aggregation{CrossSeriesReducer: monitoringpb.Aggregation_REDUCE_SUM}}, codes.InvalidArgument},
		"an aligner not served": {&monitoringpb.ListTimeSeriesRequest{Name: "projects/p", Filter: metricType, Interval: interval,
			Aggregation: &monitoringpb.Aggregation{AlignmentPeriod: durationpb.New(time.Minute), PerSeriesAligner: monitoringpb.Aggregation_ALIGN_RATE}}, codes.Unimplemented},
	} {
		_, err := list(c, tc.req)
		if status.Code(err) != tc.code {
			t.Errorf("%s: %v, want %s", name, err, tc.code)
		}
	}
}
