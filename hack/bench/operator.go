package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/mastodon-operator/mastodon-operator/controllers"
	"github.com/mastodon-operator/mastodon-operator/test/harness"
)

// runOperator is the process `bench operator` runs: the manager of the end-to-end tests
// (harness.NewManager, every Service reached at the harness's web server), alone in its process,
// so that its memory and its API requests are its own. Its metrics endpoint serves
// controller-runtime's rest_client_requests_total, which counts every request of the process,
// Helm's included.
func runOperator(args []string) error {
	fs := flag.NewFlagSet("operator", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the cluster")
	web := fs.String("web-address", "", "host:port that stands for every Service")
	metrics := fs.String("metrics-address", "", "address of the plain HTTP metrics endpoint")
	concurrent := fs.Int("concurrent", controllers.DefaultConcurrent, "main's --concurrent")
	requestLog := fs.String("request-log", "", "file to write each API request's method and path to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	if *requestLog != "" {
		f, err := os.Create(*requestLog)
		if err != nil {
			return err
		}
		defer f.Close()
		var mu sync.Mutex
		cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
			return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
				mu.Lock()
				fmt.Fprintf(f, "%s %s\n", req.Method, req.URL.Path)
				mu.Unlock()
				return rt.RoundTrip(req)
			})
		})
	}
	logger := zap.New(zap.WriteTo(os.Stderr))
	ctrl.SetLogger(logger)
	mgr, err := harness.NewManager(cfg, ctrl.Options{Logger: logger, Metrics: metricsserver.Options{BindAddress: *metrics,
		// The heap and CPU profiles of the run: `go tool pprof http://<address>/debug/pprof/heap`.
		ExtraHandlers: map[string]http.Handler{"/debug/pprof/": http.HandlerFunc(pprof.Index),
			"/debug/pprof/profile": http.HandlerFunc(pprof.Profile)}}},
		controllers.Options{Concurrent: *concurrent, ServiceAddress: func(string, string, int32) string { return *web }})
	if err != nil {
		return err
	}
	return mgr.Start(ctrl.SetupSignalHandler())
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// operatorProcess is a running `bench operator`.
type operatorProcess struct {
	cmd     *exec.Cmd
	metrics string
	exited  chan struct{}
}

// startOperator runs the operator in a process of its own, its log appended to logPath, and
// waits until its metrics endpoint answers.
func startOperator(ctx context.Context, h *harness.Harness, concurrent int, logPath string) (*operatorProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	p := &operatorProcess{metrics: "127.0.0.1:" + strconv.Itoa(port), exited: make(chan struct{})}
	p.cmd = exec.Command(self, "operator", "-kubeconfig", h.Cluster.KubeconfigPath(),
		"-web-address", h.Web.Address("", "", 0), "-metrics-address", p.metrics, "-concurrent", strconv.Itoa(concurrent),
		"-request-log", os.Getenv("BENCH_REQUEST_LOG"))
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case <-p.exited:
			return false, fmt.Errorf("the operator exited: see %s", logPath)
		default:
		}
		_, err := p.requests()
		return err == nil, nil
	})
	if err != nil {
		p.stop()
		return nil, err
	}
	progress("the operator runs as pid %d, metrics and profiles at http://%s", p.cmd.Process.Pid, p.metrics)
	return p, nil
}

// requestCounts are the API requests the operator sent so far.
type requestCounts struct {
	all, writes float64
}

func (c requestCounts) minus(o requestCounts) requestCounts {
	return requestCounts{all: c.all - o.all, writes: c.writes - o.writes}
}

// requests reads rest_client_requests_total from the operator's metrics: writes are every
// method but GET (which also lists and watches).
func (p *operatorProcess) requests() (requestCounts, error) {
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		return requestCounts{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return requestCounts{}, errors.New(resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return requestCounts{}, err
	}
	var c requestCounts
	family := families["rest_client_requests_total"]
	if family == nil {
		// No request yet has no series.
		return c, nil
	}
	for _, m := range family.GetMetric() {
		v := m.GetCounter().GetValue()
		c.all += v
		for _, l := range m.GetLabel() {
			if l.GetName() == "method" && l.GetValue() != http.MethodGet {
				c.writes += v
			}
		}
	}
	return c, nil
}

// peakRSS is the most resident memory the process has had (VmHWM), in MiB.
func (p *operatorProcess) peakRSS() (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, errors.New("no VmHWM in /proc/<pid>/status")
}

// stop ends the operator as SIGTERM does, and waits for it.
func (p *operatorProcess) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// clockTicks is Linux's USER_HZ, the unit of the CPU times in /proc/<pid>/stat, 100 on every
// architecture Go supports.
const clockTicks = 100

// cpuSeconds is the CPU time (user and system) the process has used.
func cpuSeconds(pid int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: the fields start after it.
	_, rest, ok := strings.Cut(string(raw), ") ")
	fields := strings.Fields(rest)
	if !ok || len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	// utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
	utime, err := strconv.ParseFloat(fields[11], 64)
	if err != nil {
		return 0, err
	}
	stime, err := strconv.ParseFloat(fields[12], 64)
	if err != nil {
		return 0, err
	}
	return (utime + stime) / clockTicks, nil
}

// cpuUse is the CPU time the operator and the control plane have used.
type cpuUse struct{ operator, cluster float64 }

func (c cpuUse) minus(o cpuUse) cpuUse {
	return cpuUse{operator: c.operator - o.operator, cluster: c.cluster - o.cluster}
}

func (b *bench) cpu(op *operatorProcess) (cpuUse, error) {
	var use cpuUse
	var err error
	if use.operator, err = cpuSeconds(op.cmd.Process.Pid); err != nil {
		return use, err
	}
	for _, pid := range b.h.Cluster.PIDs() {
		s, err := cpuSeconds(pid)
		if err != nil {
			return use, err
		}
		use.cluster += s
	}
	return use, nil
}
