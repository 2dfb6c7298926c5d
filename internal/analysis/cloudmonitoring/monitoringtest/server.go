// Package monitoringtest is a local Cloud Monitoring: a gRPC server of the Monitoring API v3's
// MetricService on 127.0.0.1 that the real client (cloud.google.com/go/monitoring/apiv3/v2)
// talks to.
//
// It keeps the points written to it (CreateTimeSeries, one point per series as the API wants)
// in time series per project, metric and monitored resource, and answers ListTimeSeries as the
// API does for what the operator asks:
//
//   - the filter: = of a string or of monitoring.regex.full_match(RE2), AND, OR and parentheses,
//     on metric.type, resource.type and the metric's and resource's labels, with exactly one
//     metric.type;
//   - the interval: points whose end time is in (start, end];
//   - the aggregation: ALIGN_DELTA over alignment periods ending at the interval's end (at
//     least 60 s), INT64 and DOUBLE points added up and distributions merged; REDUCE_SUM across
//     the series, grouped by metric and resource labels.
//
// Anything else in a request is refused as Unimplemented, so that a test does not pass on
// something this server does not do like the API. Unlike the API, it lets anyone write any
// metric, the load balancer's included. Every ListTimeSeries request is recorded (Requests).
//
//	srv, err := monitoringtest.Start()
//	defer srv.Close()
//	client, err := monitoring.NewMetricClient(ctx, srv.ClientOptions()...)
package monitoringtest

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/api/option"
	"google.golang.org/genproto/googleapis/api/distribution"
	"google.golang.org/genproto/googleapis/api/metric"
	"google.golang.org/genproto/googleapis/api/monitoredres"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Server is a MetricService on loopback.
type Server struct {
	monitoringpb.UnimplementedMetricServiceServer
	srv *grpc.Server
	lis net.Listener

	mu sync.Mutex
	// series by project, then by seriesKey.
	series   map[string]map[string]*monitoringpb.TimeSeries
	requests []*monitoringpb.ListTimeSeriesRequest
}

// Start serves on a free loopback port until Close.
func Start() (*Server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{srv: grpc.NewServer(), lis: lis, series: map[string]map[string]*monitoringpb.TimeSeries{}}
	monitoringpb.RegisterMetricServiceServer(s.srv, s)
	go func() { _ = s.srv.Serve(lis) }()
	return s, nil
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// ClientOptions point a client at the server, in plaintext and without credentials.
func (s *Server) ClientOptions() []option.ClientOption {
	return []option.ClientOption{option.WithEndpoint(s.Addr()), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials()))}
}

// Close stops the server; clients get Unavailable from then on.
func (s *Server) Close() { s.srv.Stop() }

// Requests returns the ListTimeSeries requests received, oldest first.
func (s *Server) Requests() []*monitoringpb.ListTimeSeriesRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*monitoringpb.ListTimeSeriesRequest, len(s.requests))
	for i, r := range s.requests {
		out[i] = proto.Clone(r).(*monitoringpb.ListTimeSeriesRequest)
	}
	return out
}

// CreateTimeSeries adds each series' point to the series of the same metric and resource.
func (s *Server) CreateTimeSeries(_ context.Context, req *monitoringpb.CreateTimeSeriesRequest) (*emptypb.Empty, error) {
	project, err := projectOf(req.GetName())
	if err != nil {
		return nil, err
	}
	for _, ts := range req.GetTimeSeries() {
		if ts.GetMetric().GetType() == "" || ts.GetResource().GetType() == "" {
			return nil, status.Error(codes.InvalidArgument, "a time series needs a metric type and a resource type")
		}
		if len(ts.GetPoints()) != 1 {
			return nil, status.Errorf(codes.InvalidArgument, "a time series must have exactly one point, has %d", len(ts.GetPoints()))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.series[project] == nil {
		s.series[project] = map[string]*monitoringpb.TimeSeries{}
	}
	for _, ts := range req.GetTimeSeries() {
		k := seriesKey(ts.GetMetric(), ts.GetResource())
		stored, ok := s.series[project][k]
		if !ok {
			stored = proto.Clone(ts).(*monitoringpb.TimeSeries)
			stored.Points = nil
			s.series[project][k] = stored
		}
		stored.Points = append(stored.Points, proto.Clone(ts.GetPoints()[0]).(*monitoringpb.Point))
	}
	return &emptypb.Empty{}, nil
}

// ListTimeSeries selects the project's series by the filter and the interval, then aligns and
// reduces them as the aggregation says.
func (s *Server) ListTimeSeries(_ context.Context, req *monitoringpb.ListTimeSeriesRequest) (*monitoringpb.ListTimeSeriesResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, proto.Clone(req).(*monitoringpb.ListTimeSeriesRequest))

	project, err := projectOf(req.GetName())
	if err != nil {
		return nil, err
	}
	match, err := parseFilter(req.GetFilter())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "filter %q: %v", req.GetFilter(), err)
	}
	if req.GetInterval().GetEndTime() == nil {
		return nil, status.Error(codes.InvalidArgument, "interval.endTime is required")
	}
	end := req.GetInterval().GetEndTime().AsTime()
	start := end
	if req.GetInterval().GetStartTime() != nil {
		start = req.GetInterval().GetStartTime().AsTime()
	}
	if start.After(end) {
		return nil, status.Error(codes.InvalidArgument, "interval.startTime is after interval.endTime")
	}
	if req.GetView() != monitoringpb.ListTimeSeriesRequest_FULL || req.GetPageToken() != "" {
		return nil, status.Error(codes.Unimplemented, "this test server answers the FULL view, in one page")
	}

	var selected []*monitoringpb.TimeSeries
	for _, k := range sortedKeys(s.series[project]) {
		ts := s.series[project][k]
		if !match(ts) {
			continue
		}
		in := proto.Clone(ts).(*monitoringpb.TimeSeries)
		in.Points = nil
		for _, p := range ts.GetPoints() {
			if t := p.GetInterval().GetEndTime().AsTime(); t.After(start) && !t.After(end) {
				in.Points = append(in.Points, p)
			}
		}
		if len(in.Points) > 0 {
			selected = append(selected, in)
		}
	}

	agg := req.GetAggregation()
	if agg.GetPerSeriesAligner() == monitoringpb.Aggregation_ALIGN_NONE {
		if agg.GetCrossSeriesReducer() != monitoringpb.Aggregation_REDUCE_NONE {
			return nil, status.Error(codes.InvalidArgument, "a cross-series reducer needs a per-series aligner")
		}
		return &monitoringpb.ListTimeSeriesResponse{TimeSeries: selected}, nil
	}
	if agg.GetPerSeriesAligner() != monitoringpb.Aggregation_ALIGN_DELTA {
		return nil, status.Errorf(codes.Unimplemented, "aligner %s is not served by this test server", agg.GetPerSeriesAligner())
	}
	period := agg.GetAlignmentPeriod().AsDuration()
	if period < time.Minute {
		return nil, status.Errorf(codes.InvalidArgument, "the alignment period must be at least 60s, is %s", period)
	}
	aligned := make([]*monitoringpb.TimeSeries, 0, len(selected))
	for _, ts := range selected {
		a, err := alignDelta(ts, start, end, period)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		aligned = append(aligned, a)
	}
	switch agg.GetCrossSeriesReducer() {
	case monitoringpb.Aggregation_REDUCE_NONE:
		return &monitoringpb.ListTimeSeriesResponse{TimeSeries: aligned}, nil
	case monitoringpb.Aggregation_REDUCE_SUM:
		reduced, err := reduceSum(aligned, agg.GetGroupByFields())
		if err != nil {
			return nil, err
		}
		return &monitoringpb.ListTimeSeriesResponse{TimeSeries: reduced}, nil
	}
	return nil, status.Errorf(codes.Unimplemented, "reducer %s is not served by this test server", agg.GetCrossSeriesReducer())
}

func projectOf(name string) (string, error) {
	project, ok := strings.CutPrefix(name, "projects/")
	if !ok || project == "" || strings.Contains(project, "/") {
		return "", status.Errorf(codes.InvalidArgument, "name %q: want projects/PROJECT_ID", name)
	}
	return project, nil
}

// alignDelta adds up the points of each alignment period, the periods ending at end, end-period,
// and so on back to start, newest first as the API returns them.
func alignDelta(ts *monitoringpb.TimeSeries, start, end time.Time, period time.Duration) (*monitoringpb.TimeSeries, error) {
	out := proto.Clone(ts).(*monitoringpb.TimeSeries)
	out.Points = nil
	out.MetricKind = metric.MetricDescriptor_DELTA
	for pe := end; pe.After(start); pe = pe.Add(-period) {
		ps := pe.Add(-period)
		var sum *monitoringpb.TypedValue
		for _, p := range ts.GetPoints() {
			if t := p.GetInterval().GetEndTime().AsTime(); t.After(ps) && !t.After(pe) {
				var err error
				if sum, err = add(sum, p.GetValue()); err != nil {
					return nil, err
				}
			}
		}
		if sum != nil {
			out.Points = append(out.Points, &monitoringpb.Point{
				Interval: &monitoringpb.TimeInterval{StartTime: timestamppb.New(ps), EndTime: timestamppb.New(pe)}, Value: sum})
		}
	}
	return out, nil
}

// reduceSum adds up, period by period, the series that have the same values of the group-by
// fields; only those fields are left of the metric's and resource's labels.
func reduceSum(series []*monitoringpb.TimeSeries, groupBy []string) ([]*monitoringpb.TimeSeries, error) {
	groups := map[string]*monitoringpb.TimeSeries{}
	for _, ts := range series {
		m := &metric.Metric{Type: ts.GetMetric().GetType(), Labels: map[string]string{}}
		r := &monitoredres.MonitoredResource{Type: ts.GetResource().GetType(), Labels: map[string]string{}}
		for _, f := range groupBy {
			if name, ok := cutLabel(f, "metric"); ok {
				m.Labels[name] = ts.GetMetric().GetLabels()[name]
			} else if name, ok := cutLabel(f, "resource"); ok {
				r.Labels[name] = ts.GetResource().GetLabels()[name]
			} else {
				return nil, status.Errorf(codes.Unimplemented, "group by %s is not served by this test server", f)
			}
		}
		k := seriesKey(m, r)
		g, ok := groups[k]
		if !ok {
			g = &monitoringpb.TimeSeries{Metric: m, Resource: r, MetricKind: ts.GetMetricKind(), ValueType: ts.GetValueType()}
			groups[k] = g
		}
		for _, p := range ts.GetPoints() {
			var at *monitoringpb.Point
			for _, q := range g.Points {
				if q.GetInterval().GetEndTime().AsTime().Equal(p.GetInterval().GetEndTime().AsTime()) {
					at = q
				}
			}
			if at == nil {
				g.Points = append(g.Points, &monitoringpb.Point{Interval: p.GetInterval()})
				at = g.Points[len(g.Points)-1]
			}
			sum, err := add(at.Value, p.GetValue())
			if err != nil {
				return nil, status.Error(codes.InvalidArgument, err.Error())
			}
			at.Value = sum
		}
	}
	out := make([]*monitoringpb.TimeSeries, 0, len(groups))
	for _, k := range sortedKeys(groups) {
		g := groups[k]
		sort.Slice(g.Points, func(i, j int) bool {
			return g.Points[i].GetInterval().GetEndTime().AsTime().After(g.Points[j].GetInterval().GetEndTime().AsTime())
		})
		out = append(out, g)
	}
	return out, nil
}

// cutLabel reads a label field, metric.label.NAME or metric.labels.NAME for the metric's.
func cutLabel(field, of string) (string, bool) {
	if name, ok := strings.CutPrefix(field, of+".label."); ok {
		return name, true
	}
	return strings.CutPrefix(field, of+".labels.")
}

// add is sum + v, for values of the same type; a nil sum is zero.
func add(sum, v *monitoringpb.TypedValue) (*monitoringpb.TypedValue, error) {
	if sum != nil && reflect.TypeOf(sum.GetValue()) != reflect.TypeOf(v.GetValue()) {
		return nil, fmt.Errorf("cannot add up %T and %T values", sum.GetValue(), v.GetValue())
	}
	switch x := v.GetValue().(type) {
	case *monitoringpb.TypedValue_Int64Value:
		return &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: sum.GetInt64Value() + x.Int64Value}}, nil
	case *monitoringpb.TypedValue_DoubleValue:
		return &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_DoubleValue{DoubleValue: sum.GetDoubleValue() + x.DoubleValue}}, nil
	case *monitoringpb.TypedValue_DistributionValue:
		d, err := merge(sum.GetDistributionValue(), x.DistributionValue)
		if err != nil {
			return nil, err
		}
		return &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_DistributionValue{DistributionValue: d}}, nil
	}
	return nil, fmt.Errorf("cannot add up %T values", v.GetValue())
}

// merge is the distribution of the values of a and b: counts and bucket counts added, the mean
// weighted (the sum of squared deviations is left out).
func merge(a, b *distribution.Distribution) (*distribution.Distribution, error) {
	if a == nil {
		return proto.Clone(b).(*distribution.Distribution), nil
	}
	if !proto.Equal(a.GetBucketOptions(), b.GetBucketOptions()) {
		return nil, fmt.Errorf("distributions with different buckets cannot be added up")
	}
	out := &distribution.Distribution{Count: a.GetCount() + b.GetCount(), BucketOptions: a.GetBucketOptions()}
	if out.Count > 0 {
		out.Mean = (a.GetMean()*float64(a.GetCount()) + b.GetMean()*float64(b.GetCount())) / float64(out.Count)
	}
	out.BucketCounts = make([]int64, max(len(a.GetBucketCounts()), len(b.GetBucketCounts())))
	for i, c := range a.GetBucketCounts() {
		out.BucketCounts[i] += c
	}
	for i, c := range b.GetBucketCounts() {
		out.BucketCounts[i] += c
	}
	return out, nil
}

// seriesKey identifies a series by its metric and resource, labels included.
func seriesKey(m *metric.Metric, r *monitoredres.MonitoredResource) string {
	return m.GetType() + labelsKey(m.GetLabels()) + "|" + r.GetType() + labelsKey(r.GetLabels())
}

func labelsKey(labels map[string]string) string {
	var b strings.Builder
	for _, k := range sortedKeys(labels) {
		fmt.Fprintf(&b, ",%q=%q", k, labels[k])
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
