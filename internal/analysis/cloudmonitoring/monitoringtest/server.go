// Package monitoringtest is a local Cloud Monitoring: a gRPC server of the MetricService that
// the real client talks to. It keeps the time series written to it (CreateTimeSeries) and
// answers ListTimeSeries as the API does for what the operator asks: the filter language's
// equality, regex match, AND, OR and parentheses; the time interval; the ALIGN_DELTA and
// ALIGN_PERCENTILE_* aligners; and the REDUCE_SUM and REDUCE_MAX reducers with group-by fields.
package monitoringtest

import (
	"context"
	"fmt"
	"math"
	"net"
	"sort"
	"strings"
	"sync"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/api/option"
	"google.golang.org/genproto/googleapis/api/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Server is a MetricService on loopback.
type Server struct {
	monitoringpb.UnimplementedMetricServiceServer
	srv *grpc.Server
	lis net.Listener

	mu       sync.Mutex
	series   []*monitoringpb.TimeSeries
	requests []*monitoringpb.ListTimeSeriesRequest
}

// Start serves on a free loopback port.
func Start() (*Server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{srv: grpc.NewServer(), lis: lis}
	monitoringpb.RegisterMetricServiceServer(s.srv, s)
	go func() { _ = s.srv.Serve(lis) }()
	return s, nil
}

// ClientOptions point the real client at the server.
func (s *Server) ClientOptions() []option.ClientOption {
	return []option.ClientOption{option.WithEndpoint(s.lis.Addr().String()), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials()))}
}

// Close stops the server.
func (s *Server) Close() { s.srv.Stop() }

// Requests returns the ListTimeSeries requests received.
func (s *Server) Requests() []*monitoringpb.ListTimeSeriesRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*monitoringpb.ListTimeSeriesRequest(nil), s.requests...)
}

// CreateTimeSeries stores the points, each series under its metric and resource labels.
func (s *Server) CreateTimeSeries(_ context.Context, req *monitoringpb.CreateTimeSeriesRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ts := range req.GetTimeSeries() {
		s.series = append(s.series, proto.Clone(ts).(*monitoringpb.TimeSeries))
	}
	return &emptypb.Empty{}, nil
}

// ListTimeSeries filters, aligns and reduces the stored series.
func (s *Server) ListTimeSeries(_ context.Context, req *monitoringpb.ListTimeSeriesRequest) (*monitoringpb.ListTimeSeriesResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, proto.Clone(req).(*monitoringpb.ListTimeSeriesRequest))
	if !strings.HasPrefix(req.GetName(), "projects/") {
		return nil, status.Errorf(codes.InvalidArgument, "name %q: want projects/PROJECT", req.GetName())
	}
	match, err := parseFilter(req.GetFilter())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "filter: %v", err)
	}
	start, end := req.GetInterval().GetStartTime().AsTime(), req.GetInterval().GetEndTime().AsTime()
	var selected []*monitoringpb.TimeSeries
	for _, ts := range s.series {
		ok, err := match(ts)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "filter: %v", err)
		}
		if !ok {
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
	if agg == nil {
		return &monitoringpb.ListTimeSeriesResponse{TimeSeries: selected}, nil
	}
	aligned := make([]*monitoringpb.TimeSeries, 0, len(selected))
	for _, ts := range selected {
		v, err := align(ts.GetPoints(), agg.GetPerSeriesAligner())
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		out := proto.Clone(ts).(*monitoringpb.TimeSeries)
		out.Points = []*monitoringpb.Point{{Interval: req.GetInterval(), Value: v}}
		aligned = append(aligned, out)
	}
	reduced, err := reduce(aligned, agg.GetCrossSeriesReducer(), agg.GetGroupByFields(), req.GetInterval())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &monitoringpb.ListTimeSeriesResponse{TimeSeries: reduced}, nil
}

func align(points []*monitoringpb.Point, aligner monitoringpb.Aggregation_Aligner) (*monitoringpb.TypedValue, error) {
	switch aligner {
	case monitoringpb.Aggregation_ALIGN_DELTA:
		var n int64
		for _, p := range points {
			n += p.GetValue().GetInt64Value()
		}
		return &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: n}}, nil
	case monitoringpb.Aggregation_ALIGN_PERCENTILE_99, monitoringpb.Aggregation_ALIGN_PERCENTILE_95,
		monitoringpb.Aggregation_ALIGN_PERCENTILE_50, monitoringpb.Aggregation_ALIGN_PERCENTILE_05:
		q := map[monitoringpb.Aggregation_Aligner]float64{monitoringpb.Aggregation_ALIGN_PERCENTILE_99: 0.99,
			monitoringpb.Aggregation_ALIGN_PERCENTILE_95: 0.95, monitoringpb.Aggregation_ALIGN_PERCENTILE_50: 0.5,
			monitoringpb.Aggregation_ALIGN_PERCENTILE_05: 0.05}[aligner]
		v, err := percentile(points, q)
		if err != nil {
			return nil, err
		}
		return &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_DoubleValue{DoubleValue: v}}, nil
	}
	return nil, fmt.Errorf("aligner %s is not served by this test server", aligner)
}

// percentile merges the points' distributions (explicit buckets) and interpolates within the
// bucket the quantile falls in.
func percentile(points []*monitoringpb.Point, q float64) (float64, error) {
	var bounds []float64
	var counts []int64
	for _, p := range points {
		d := p.GetValue().GetDistributionValue()
		if d == nil || d.GetBucketOptions().GetExplicitBuckets() == nil {
			return 0, fmt.Errorf("a percentile aligner needs distributions with explicit buckets")
		}
		bounds = d.GetBucketOptions().GetExplicitBuckets().GetBounds()
		for i, c := range d.GetBucketCounts() {
			for len(counts) <= i {
				counts = append(counts, 0)
			}
			counts[i] += c
		}
	}
	var total int64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return math.NaN(), nil
	}
	rank := q * float64(total)
	var seen float64
	for i, c := range counts {
		if seen+float64(c) >= rank && c > 0 {
			lower, upper := 0.0, 0.0
			if i > 0 {
				lower = bounds[i-1]
			}
			if i < len(bounds) {
				upper = bounds[i]
			} else {
				return lower, nil
			}
			return lower + (upper-lower)*(rank-seen)/float64(c), nil
		}
		seen += float64(c)
	}
	return bounds[len(bounds)-1], nil
}

func reduce(series []*monitoringpb.TimeSeries, reducer monitoringpb.Aggregation_Reducer, groupBy []string, ti *monitoringpb.TimeInterval) ([]*monitoringpb.TimeSeries, error) {
	if reducer == monitoringpb.Aggregation_REDUCE_NONE {
		return series, nil
	}
	groups := map[string]*monitoringpb.TimeSeries{}
	var keys []string
	for _, ts := range series {
		labels := map[string]string{}
		var key []string
		for _, f := range groupBy {
			name, ok := strings.CutPrefix(f, "metric.label.")
			if !ok {
				return nil, fmt.Errorf("group by %s is not served by this test server", f)
			}
			labels[name] = ts.GetMetric().GetLabels()[name]
			key = append(key, name+"="+labels[name])
		}
		k := strings.Join(key, ",")
		v := ts.GetPoints()[0].GetValue()
		g, ok := groups[k]
		if !ok {
			g = &monitoringpb.TimeSeries{Metric: &metric.Metric{Type: ts.GetMetric().GetType(), Labels: labels},
				MetricKind: ts.GetMetricKind(), ValueType: ts.GetValueType(),
				Points: []*monitoringpb.Point{{Interval: ti, Value: proto.Clone(v).(*monitoringpb.TypedValue)}}}
			groups[k] = g
			keys = append(keys, k)
			continue
		}
		acc := g.Points[0].Value
		switch reducer {
		case monitoringpb.Aggregation_REDUCE_SUM:
			if x, ok := acc.GetValue().(*monitoringpb.TypedValue_Int64Value); ok {
				x.Int64Value += v.GetInt64Value()
			} else {
				acc.Value = &monitoringpb.TypedValue_DoubleValue{DoubleValue: acc.GetDoubleValue() + v.GetDoubleValue()}
			}
		case monitoringpb.Aggregation_REDUCE_MAX:
			if v.GetDoubleValue() > acc.GetDoubleValue() || v.GetInt64Value() > acc.GetInt64Value() {
				g.Points[0].Value = proto.Clone(v).(*monitoringpb.TypedValue)
			}
		default:
			return nil, fmt.Errorf("reducer %s is not served by this test server", reducer)
		}
	}
	sort.Strings(keys)
	out := make([]*monitoringpb.TimeSeries, len(keys))
	for i, k := range keys {
		out[i] = groups[k]
	}
	return out, nil
}
