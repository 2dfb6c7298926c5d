package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	promanalysis "github.com/mastodon-operator/mastodon-operator/internal/analysis/prometheus"
)

// detectionInterval is the analysis interval of the detection runs.
const detectionInterval = 5 * time.Second

// critical is the rollback procedure's "act at once" threshold, the operator's default.
const critical = 0.5

// detection measures, for each provider, the time from the error rate crossing critical at the
// provider to the traffic back on the old pods (the web Service selecting them again, as the
// fixture had it). The errors start at a random moment of the analysis interval, as they would.
//
// For the HTTP probe the provider is the instance's URL itself: the errors cross when the
// harness's web server starts answering 502. For Prometheus, ingress-nginx's request counters
// (served here and scraped every second by Prometheus from Debian) turn to 502s, and the
// crossing is when the operator's own Prometheus provider, asked every 100 ms with the
// migration's queries, first measures an error rate above critical.
func (b *bench) detection(ctx context.Context, t *table) error {
	op, err := startOperator(ctx, b.h, 0, b.log)
	if err != nil {
		return err
	}
	defer op.stop()
	nginx, err := startIngressNginx()
	if err != nil {
		return err
	}
	defer nginx.close()
	prom, stopProm, err := startPrometheus(ctx, filepath.Join(b.cfg.dir, "prometheus"), nginx.addr)
	if err != nil {
		return err
	}
	defer stopProm()

	providers := []struct {
		name   string
		inject func(ns string) (crossed func(context.Context) (time.Time, error), reset func())
		spec   func(m *v1alpha1.MastodonMigration)
	}{
		{
			name: "HTTP probe",
			spec: func(*v1alpha1.MastodonMigration) {},
			inject: func(ns string) (func(context.Context) (time.Time, error), func()) {
				path := "/probe/" + ns
				b.h.Web.Answer(path, http.StatusBadGateway, 0)
				at := time.Now()
				return func(context.Context) (time.Time, error) { return at, nil }, func() { b.h.Web.Answer(path, http.StatusOK, 0) }
			},
		},
		{
			name: "Prometheus",
			spec: func(m *v1alpha1.MastodonMigration) {
				m.Spec.Analysis.HTTP = nil
				m.Spec.Analysis.Prometheus = &v1alpha1.PrometheusAnalysis{Address: prom}
				nginx.serve(m.Namespace, false)
			},
			inject: func(ns string) (func(context.Context) (time.Time, error), func()) {
				nginx.serve(ns, true)
				return func(ctx context.Context) (time.Time, error) {
					p, err := promanalysis.New(promanalysis.Config{Address: prom, Namespace: ns, Ingress: "mastodon"})
					if err != nil {
						return time.Time{}, err
					}
					var at time.Time
					err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
						got, err := p.Measure(ctx, detectionInterval)
						if err == nil && got.ErrorRate != nil && *got.ErrorRate > critical {
							at = time.Now()
							return true, nil
						}
						return false, nil
					})
					return at, err
				}, func() { nginx.stop(ns) }
			},
		},
	}
	for _, p := range providers {
		var samples []float64
		for i := range b.cfg.runs {
			ns := fmt.Sprintf("bench-detect-%s-%d", map[string]string{"HTTP probe": "http", "Prometheus": "prom"}[p.name], i)
			d, err := b.detectOnce(ctx, ns, p.spec, p.inject)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			progress("detection %s %d: traffic back on the old pods %.2f s after the error rate crossed critical", p.name, i+1, d.Seconds())
			samples = append(samples, d.Seconds())
			if err := b.drop(ctx, []string{ns}); err != nil {
				return err
			}
		}
		target := detectionInterval + time.Second
		worst := 0.0
		for _, s := range samples {
			worst = max(worst, s)
		}
		t.add(row{
			what:     fmt.Sprintf("Detection, %s: error rate crossing 50%% → traffic back on the old pods (interval %s)", p.name, detectionInterval),
			measured: secs(median(samples)) + spread(samples, secs), against: "the interval + 1 s",
			ratio: fmt.Sprintf("worst %.2f×", worst/target.Seconds()), target: fmt.Sprintf("≤ %s", target), met: met(worst <= target.Seconds()),
		})
	}
	return nil
}

func (b *bench) detectOnce(ctx context.Context, ns string, spec func(*v1alpha1.MastodonMigration),
	inject func(ns string) (func(context.Context) (time.Time, error), func())) (time.Duration, error) {
	if err := b.deploy(ctx, []string{ns}); err != nil {
		return 0, err
	}
	web := &corev1.Service{}
	if err := b.h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mastodon-web"}, web); err != nil {
		return 0, err
	}
	oldSelector := web.Spec.Selector
	m, err := b.sample(ns, time.Hour, detectionInterval)
	if err != nil {
		return 0, err
	}
	spec(m)
	if err := b.h.Client.Create(ctx, m); err != nil {
		return 0, err
	}
	if _, err := b.waitPhase(ctx, m, v1alpha1.PhaseObserving, 10*time.Minute); err != nil {
		return 0, err
	}
	if err := b.h.Client.Get(ctx, client.ObjectKeyFromObject(web), web); err != nil {
		return 0, err
	}
	if reflect.DeepEqual(web.Spec.Selector, oldSelector) {
		return 0, errors.New("in Observing the web Service still selects the old pods")
	}
	// The errors start at a random moment of the interval.
	time.Sleep(time.Duration(rand.Int64N(int64(detectionInterval))))
	crossed, reset := inject(ns)
	defer reset()

	var back time.Time
	var watchErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		watchErr = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
			got := &corev1.Service{}
			if err := b.h.Client.Get(ctx, client.ObjectKeyFromObject(web), got); err != nil {
				return false, err
			}
			if reflect.DeepEqual(got.Spec.Selector, oldSelector) {
				back = time.Now()
				return true, nil
			}
			return false, nil
		})
	}()
	at, err := crossed(ctx)
	wg.Wait()
	if err != nil {
		return 0, fmt.Errorf("the error rate never crossed critical at the provider: %w", err)
	}
	if watchErr != nil {
		return 0, fmt.Errorf("the traffic did not come back: %w", watchErr)
	}
	got, err := b.waitPhase(ctx, m, v1alpha1.PhaseRolledBack, time.Minute)
	if err != nil {
		return 0, err
	}
	if rb := got.Status.Rollback; rb == nil || rb.Trigger != "Automatic" || rb.Level != 1 {
		return 0, fmt.Errorf("status.rollback %+v, want an automatic level 1", rb)
	}
	return back.Sub(at), nil
}

// ingressNginx serves ingress-nginx's request counters and latency histogram for the bench's
// namespaces (Ingress mastodon), adding 20 requests per 100 ms to each: all 200 while healthy,
// all 502 once failing.
type ingressNginx struct {
	srv      *http.Server
	addr     string
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	mu       sync.Mutex
	failing  map[string]bool
	done     chan struct{}
}

func startIngressNginx() (*ingressNginx, error) {
	n := &ingressNginx{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nginx_ingress_controller_requests"},
			[]string{"namespace", "ingress", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "nginx_ingress_controller_request_duration_seconds",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5}}, []string{"namespace", "ingress"}),
		failing: map[string]bool{},
		done:    make(chan struct{}),
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(n.requests, n.duration)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	n.addr = l.Addr().String()
	n.srv = &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = n.srv.Serve(l) }()
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-n.done:
				return
			case <-tick.C:
			}
			n.mu.Lock()
			for ns, failing := range n.failing {
				status := "200"
				if failing {
					status = "502"
				}
				n.requests.WithLabelValues(ns, "mastodon", status).Add(20)
				for range 20 {
					n.duration.WithLabelValues(ns, "mastodon").Observe(0.08)
				}
			}
			n.mu.Unlock()
		}
	}()
	return n, nil
}

func (n *ingressNginx) serve(ns string, failing bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.failing[ns] = failing
}

func (n *ingressNginx) stop(ns string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.failing, ns)
}

func (n *ingressNginx) close() {
	close(n.done)
	_ = n.srv.Close()
}

// startPrometheus runs Debian's Prometheus on loopback, scraping target every second.
func startPrometheus(ctx context.Context, dir, target string) (string, func(), error) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		return "", nil, errors.New("prometheus is not installed: `make bench` installs it (hack/test-deps.sh)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, fmt.Appendf(nil, `global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
- job_name: ingress-nginx
  static_configs: [{targets: ['%s']}]
`, target), 0o600); err != nil {
		return "", nil, err
	}
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "--config.file="+config, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--storage.tsdb.retention.time=1h", "--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = logFile.Close() }
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return false, nil
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("prometheus did not get ready: %w", err)
	}
	return "http://" + addr, stop, nil
}
