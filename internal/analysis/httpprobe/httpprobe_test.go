package httpprobe

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
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

// mastodon serves /health with OK, as Mastodon does whatever its database, and the instance
// API as instance says; it records the Authorization header the instance API got.
func mastodon(t *testing.T, instance http.HandlerFunc) (base string, auth *atomic.Value) {
	auth = &atomic.Value{}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("OK")) })
	mux.HandleFunc("/api/v2/instance", func(w http.ResponseWriter, r *http.Request) {
		auth.Store(r.Header.Get("Authorization"))
		instance(w, r)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL, auth
}

func version(v string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"domain":"example.social","version":"` + v + `"}`))
	}
}

func TestTheInstanceAPICounts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		instance  http.HandlerFunc
		want      string
		errorRate float64
		failure   string
	}{
		{"the release answers", version("4.6.2"), "4.6.2", 0, ""},
		{"a fork of the release answers", version("4.6.2+glitch"), "4.6.2", 0, ""},
		{"no version to compare", version("4.7.0-alpha.1+nightly"), "", 0, ""},
		{"the database is down while /health says OK", internal, "4.6.2", 0.2,
			"/api/v2/instance: 500 Internal Server Error"},
		{"the old stack answers", version("4.5.0"), "4.6.2", 0.2,
			"/api/v2/instance answered version 4.5.0, want 4.6.2: the old stack answered?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, _ := mastodon(t, tc.instance)
			got, err := New(base+"/health", 4, timeout, nil).CheckInstance(base+"/api/v2/instance", "", tc.want).
				Measure(context.Background(), time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if got.Requests != 5 || !got.OwnRequests || got.ErrorRate == nil || *got.ErrorRate != tc.errorRate {
				t.Fatalf("%v requests (own %v) at an error rate of %v; want 5 own requests at %v", got.Requests, got.OwnRequests, deref(got.ErrorRate), tc.errorRate)
			}
			if tc.failure == "" && got.Failure != "" || !strings.Contains(got.Failure, tc.failure) {
				t.Fatalf("failure %q, want %q", got.Failure, tc.failure)
			}
		})
	}
}

func TestTheInstanceAPIGetsTheToken(t *testing.T) {
	base, auth := mastodon(t, version("4.6.2"))
	if _, err := New(base+"/health", 1, timeout, nil).CheckInstance(base+"/api/v2/instance", "tok3n", "4.6.2").
		Measure(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := auth.Load(); got != "Bearer tok3n" {
		t.Fatalf("the instance API got Authorization %q", got)
	}
}

func TestAFailedRequestIsNamed(t *testing.T) {
	got, err := New(serve(t, ok, badGate), 2, timeout, nil).Measure(context.Background(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(got.Failure, ": 502 Bad Gateway") {
		t.Fatalf("failure %q", got.Failure)
	}
}
