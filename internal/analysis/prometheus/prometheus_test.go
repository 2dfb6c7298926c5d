package prometheus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mastodon-operator/mastodon-operator/internal/analysis"
)

// ingressNginx is a test target exposing ingress-nginx's metrics, with traffic the test
// controls: every tick adds ok and bad (502) requests to the Ingress social/mastodon, each
// taking latency. Like ingress-nginx, it creates the 502 series at the first 502.
type ingressNginx struct {
	requests         *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	ok, bad, latency atomic.Int64
	addr             string
}

func (n *ingressNginx) set(ok, bad int64, latency time.Duration) {
	n.ok.Store(ok)
	n.bad.Store(bad)
	n.latency.Store(int64(latency))
}

func startIngressNginx(t *testing.T) *ingressNginx {
	n := &ingressNginx{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nginx_ingress_controller_requests"},
			[]string{"namespace", "ingress", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "nginx_ingress_controller_request_duration_seconds",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5}}, []string{"namespace", "ingress"}),
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(n.requests, n.duration)
	// An Ingress that had traffic once and none since.
	n.requests.WithLabelValues("social", "idle", "200").Add(10)
	n.requests.WithLabelValues("social", "idle", "503").Add(5)
	n.duration.WithLabelValues("social", "idle").Observe(0.2)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	n.addr = srv.Listener.Addr().String()

	tick := time.NewTicker(50 * time.Millisecond)
	stop := make(chan struct{})
	t.Cleanup(func() { tick.Stop(); close(stop) })
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			// The Ingress quiet gets a trickle: one 200 and one 502 a second, as at night.
			if i%20 == 0 {
				n.requests.WithLabelValues("social", "quiet", "200").Inc()
				n.requests.WithLabelValues("social", "quiet", "502").Inc()
				n.duration.WithLabelValues("social", "quiet").Observe(0.2)
				n.duration.WithLabelValues("social", "quiet").Observe(0.2)
			}
			ok, bad := n.ok.Load(), n.bad.Load()
			n.requests.WithLabelValues("social", "mastodon", "200").Add(float64(ok))
			if bad > 0 {
				n.requests.WithLabelValues("social", "mastodon", "502").Add(float64(bad))
			}
			// Errors of another Ingress, and of the same name in another namespace, must not count.
			n.requests.WithLabelValues("social", "other", "500").Add(100)
			n.requests.WithLabelValues("staging", "mastodon", "500").Add(100)
			for range ok + bad {
				n.duration.WithLabelValues("social", "mastodon").Observe(time.Duration(n.latency.Load()).Seconds())
			}
		}
	}()
	return n
}

// startPrometheus runs Prometheus on loopback, scraping target every second, and returns its
// address.
func startPrometheus(t *testing.T, target string) string {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is not installed: `make test` installs it (hack/test-deps.sh, Debian's prometheus package)")
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
- job_name: ingress-nginx
  static_configs: [{targets: ['%s']}]
`, target)), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	cmd := exec.Command(bin, "--config.file="+config, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--storage.tsdb.retention.time=1h", "--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	gomega.NewWithT(t).Eventually(func() error {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	}).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(gomega.Succeed())
	return "http://" + addr
}

func TestMeasureIngressNginxMetrics(t *testing.T) {
	nginx := startIngressNginx(t)
	nginx.set(10, 0, 200*time.Millisecond)
	address := startPrometheus(t, nginx.addr)
	provider := func(t *testing.T, cfg Config) *Provider {
		cfg.Address, cfg.Namespace, cfg.MinWindow = address, "social", 4*time.Second
		p, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	ctx := context.Background()
	mastodon := provider(t, Config{Ingress: "mastodon"})
	// measured checks a measurement of the Ingress mastodon: latency in seconds.
	measured := func(errorRate, latency float64) func() error {
		return func() error {
			m, err := mastodon.Measure(ctx, time.Second)
			switch {
			case err != nil:
				return err
			case m.ErrorRate == nil || m.Latency == nil:
				return fmt.Errorf("measured %+v, want both", m)
			case math.Abs(*m.ErrorRate-errorRate) > 0.001 || math.Abs(m.Latency.Seconds()-latency) > 0.001:
				return fmt.Errorf("error rate %v, latency %v; want %v, %vs", *m.ErrorRate, *m.Latency, errorRate, latency)
			}
			return nil
		}
	}

	t.Run("healthy traffic without a 5xx series", func(t *testing.T) {
		// Every request in the 0.1-0.25 s bucket: the 95th percentile is 0.1 + 0.95 × 0.15.
		gomega.NewWithT(t).Eventually(measured(0, 0.2425)).WithTimeout(15 * time.Second).WithPolling(500 * time.Millisecond).
			Should(gomega.Succeed())
		// Up to 200 requests a second (the ticker slows down on a busy machine) over the 4 s window.
		m, err := mastodon.Measure(ctx, time.Second)
		if err != nil || m.Requests < 2*analysis.DefaultMinRequests || m.Requests > 1000 {
			t.Fatalf("counted %v requests (%v), want hundreds", m.Requests, err)
		}
		if r := analysis.Evaluate(analysis.DefaultThresholds(), analysis.Baseline{}, []analysis.Measurement{m}, nil, analysis.State{}, time.Now()); r.Verdict != analysis.Pass {
			t.Fatalf("verdict %s: %s", r.Verdict, analysis.Describe(r))
		}
	})
	t.Run("a trickle is counted, and too few requests to judge", func(t *testing.T) {
		quiet := provider(t, Config{Ingress: "quiet"})
		var m analysis.Measurement
		gomega.NewWithT(t).Eventually(func() error {
			var err error
			if m, err = quiet.Measure(ctx, time.Second); err == nil && (m.Requests < 4 || m.ErrorRate == nil) {
				err = fmt.Errorf("measured %+v", m)
			}
			return err
		}).WithTimeout(15 * time.Second).WithPolling(500 * time.Millisecond).Should(gomega.Succeed())
		// Two requests a second over the 4 s window, half of them 502.
		if m.Requests > 20 || math.Abs(*m.ErrorRate-0.5) > 0.001 {
			t.Fatalf("counted %v requests at an error rate of %v, want about 8 at 0.5", m.Requests, *m.ErrorRate)
		}
		r := analysis.Evaluate(analysis.DefaultThresholds(), analysis.Baseline{}, []analysis.Measurement{m}, nil, analysis.State{}, time.Now())
		if r.Verdict != analysis.Inconclusive || len(r.Breaches) > 0 {
			t.Fatalf("a 50%% error rate over %v requests: verdict %s, breaches %v; want Inconclusive", m.Requests, r.Verdict, r.Breaches)
		}
		t.Log(analysis.Describe(r))
	})
	t.Run("an Ingress without series is no data", func(t *testing.T) {
		if m, err := provider(t, Config{Ingress: "absent"}).Measure(ctx, time.Second); err == nil {
			t.Fatalf("measured %+v", m)
		}
	})
	t.Run("an Ingress without traffic is no data, not 0%", func(t *testing.T) {
		if m, err := provider(t, Config{Ingress: "idle"}).Measure(ctx, time.Second); err == nil {
			t.Fatalf("measured %+v", m)
		}
	})
	t.Run("5xx and slow responses", func(t *testing.T) {
		nginx.set(10, 30, 2*time.Second)
		// 30 of 40 fail; every request in the 1-2.5 s bucket: 1 + 0.95 × 1.5.
		gomega.NewWithT(t).Eventually(measured(0.75, 2.425)).WithTimeout(15 * time.Second).WithPolling(500 * time.Millisecond).
			Should(gomega.Succeed())
	})
	t.Run("a custom query", func(t *testing.T) {
		p := provider(t, Config{Ingress: "mastodon", LatencyQuery: "vector(1.5)",
			ErrorRateQuery: `sum(rate(nginx_ingress_controller_requests{namespace="$namespace",ingress="other"}[$window])) / 1000`,
			RequestsQuery:  "vector(120)"})
		m, err := p.Measure(ctx, time.Second)
		if err != nil || m.ErrorRate == nil || m.Latency == nil || *m.Latency != 1500*time.Millisecond || m.Requests != 120 {
			t.Fatalf("measured %+v, %v", m, err)
		}
	})
	t.Run("a query that fails is no data", func(t *testing.T) {
		for _, q := range []string{"sum(", `nginx_ingress_controller_requests`} {
			if m, err := provider(t, Config{Ingress: "mastodon", ErrorRateQuery: q}).Measure(ctx, time.Second); err == nil {
				t.Fatalf("%s measured %+v", q, m)
			}
		}
	})
}

func TestWindow(t *testing.T) {
	p, err := New(Config{Namespace: "social", Ingress: "mastodon"})
	if err != nil {
		t.Fatal(err)
	}
	for interval, want := range map[time.Duration]string{
		10 * time.Second:                     "1m",
		90 * time.Second:                     "1m30s",
		5*time.Minute + 200*time.Millisecond: "5m",
	} {
		if got := p.window(interval); got != want {
			t.Errorf("window of %s: %s, want %s", interval, got, want)
		}
	}
	q := p.query(DefaultErrorRateQuery, "1m")
	if strings.Contains(q, "$") || !strings.Contains(q, `{namespace="social",ingress="mastodon"}[1m]`) {
		t.Fatalf("query %s", q)
	}
}

func TestPrometheusDownIsNoData(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	p, err := New(Config{Address: "http://" + addr, Namespace: "social", Ingress: "mastodon"})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := p.Measure(context.Background(), time.Second); err == nil {
		t.Fatalf("an unreachable Prometheus measured %+v", m)
	}
}
