package httpprobe

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

const timeout = 200 * time.Millisecond

// The behaviours of the test server, one per request in turn.
var (
	ok        = status(http.StatusOK)
	internal  = status(http.StatusInternalServerError)
	badGate   = status(http.StatusBadGateway)
	unavail   = status(http.StatusServiceUnavailable)
	hangs     = after(10*timeout, http.StatusOK)
	slow40ms  = after(40*time.Millisecond, http.StatusOK)
	slow120ms = after(120*time.Millisecond, http.StatusOK)
)

func status(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
}

func after(d time.Duration, code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(d):
			w.WriteHeader(code)
		case <-r.Context().Done():
		}
	}
}

// drops closes the connection without an answer.
func drops(w http.ResponseWriter, _ *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		_ = conn.Close()
	}
}

// serve answers the requests with the behaviours in turn, starting over after the last.
func serve(t *testing.T, behaviours ...http.HandlerFunc) string {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		behaviours[(n.Add(1)-1)%int64(len(behaviours))](w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestMeasure(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		behaviours             []http.HandlerFunc
		requests               int
		errorRate              float64
		minLatency, maxLatency time.Duration // zero maxLatency: no latency measured
	}{
		{"all answer", []http.HandlerFunc{ok}, 4, 0, 0, timeout},
		{"half are 5xx", []http.HandlerFunc{ok, internal}, 6, 0.5, 0, timeout},
		{"every 5xx counts", []http.HandlerFunc{badGate, unavail, ok, ok}, 4, 0.5, 0, timeout},
		{"timeouts and broken connections are errors", []http.HandlerFunc{ok, hangs, drops, unavail}, 4, 0.75, 0, timeout},
		{"the latency is the mean of the answers", []http.HandlerFunc{slow40ms, slow120ms}, 4, 0, 80 * time.Millisecond, 120 * time.Millisecond},
		{"no answer at all is every request failing, with no latency", []http.HandlerFunc{hangs}, 2, 1, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := New(serve(t, tc.behaviours...), tc.requests, timeout, nil).Measure(context.Background(), time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if got.Requests != float64(tc.requests) || got.ErrorRate == nil || *got.ErrorRate != tc.errorRate {
				t.Fatalf("got %v requests, error rate %v; want %d, %v", got.Requests, deref(got.ErrorRate), tc.requests, tc.errorRate)
			}
			switch {
			case tc.maxLatency == 0 && got.Latency != nil:
				t.Fatalf("latency %v measured without an answer", *got.Latency)
			case tc.maxLatency > 0 && (got.Latency == nil || *got.Latency < tc.minLatency || *got.Latency >= tc.maxLatency):
				t.Fatalf("latency %v, want in [%v, %v)", deref(got.Latency), tc.minLatency, tc.maxLatency)
			}
		})
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return "nil"
	}
	return *p
}

func TestNothingListeningIsNoData(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	if got, err := New(url, 3, timeout, nil).Measure(context.Background(), time.Minute); err == nil {
		t.Fatalf("a probe that reaches nothing measured %+v; want no data", got)
	}
}

func TestACancelledMeasurementIsNoData(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got, err := New(serve(t, ok), 3, timeout, nil).Measure(ctx, time.Minute); err == nil {
		t.Fatalf("a cancelled probe measured %+v; want no data", got)
	}
}

func TestDefaults(t *testing.T) {
	p := New("http://example.invalid", 0, 0, nil)
	if p.requests != DefaultRequests || p.timeout != DefaultTimeout || p.client != http.DefaultClient {
		t.Fatalf("got %+v", p)
	}
}
