// Package harness brings up what the end-to-end tests, the demo and the benchmarks run against:
// the local cluster, the CRDs (the operator's and GKE's stubs), the official chart in a Helm
// repository on loopback, a production-like Mastodon from the Kustomize fixture, and the operator.
package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/api/option"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	apiruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/controllers"
	"github.com/mastodon-operator/mastodon-operator/internal/chartrepo"
	"github.com/mastodon-operator/mastodon-operator/internal/localcluster"
	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

// NodePoolLabel is the GKE node-pool label the fixture's pods select; the harness's nodes carry it.
const NodePoolLabel = "cloud.google.com/gke-nodepool"

// NodePool is the pool the fixture runs in.
const NodePool = "mastodon-pool"

// Options configure a harness.
type Options struct {
	// BinDir holds the control plane binaries (default: $MASTODON_OPERATOR_BIN_DIR).
	BinDir string
	// Dir keeps the cluster's state and logs (default: a temporary directory, removed on Stop).
	Dir string
	// Nodes is how many fake nodes join the node pool (default 3).
	Nodes int
	// Logf reports progress (default: silent).
	Logf func(format string, args ...any)
	// OperatorLog receives the operator's log (default: discarded).
	OperatorLog io.Writer
	// CloudSQL points the operator's Cloud SQL Admin client at a server (a local one in tests).
	CloudSQL []option.ClientOption
}

// Harness is a running local cluster with the operator's CRDs and a chart repository.
type Harness struct {
	Cluster *localcluster.Cluster
	Client  client.Client
	Scheme  *apiruntime.Scheme
	// ChartURL is the loopback Helm repository serving the official chart (mastodon 1.0.2).
	ChartURL string
	// Web answers the operator's HTTP health checks and analysis probes for the stack.
	Web *Web

	repo        *chartrepo.Server
	operatorLog io.Writer
	cloudSQL    []option.ClientOption
	tempDir     string
}

// Scheme knows the built-in kinds and the operator's.
func Scheme() *apiruntime.Scheme {
	s := apiruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}

// RepoPath returns a path inside this repository.
func RepoPath(elem ...string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(append([]string{filepath.Dir(file), "..", ".."}, elem...)...)
}

// Start brings up the cluster, installs the CRDs and serves the official chart.
func Start(ctx context.Context, opts Options) (_ *Harness, err error) {
	h := &Harness{Scheme: Scheme(), operatorLog: opts.OperatorLog, cloudSQL: opts.CloudSQL}
	if h.operatorLog == nil {
		h.operatorLog = io.Discard
	}
	// The clients of this process log through controller-runtime too: into the operator's log.
	ctrl.SetLogger(zap.New(zap.WriteTo(h.operatorLog), zap.UseDevMode(true)))
	defer func() {
		if err != nil {
			h.Stop()
		}
	}()
	if opts.Dir == "" {
		if h.tempDir, err = os.MkdirTemp("", "mastodon-operator-"); err != nil {
			return nil, err
		}
		opts.Dir = h.tempDir
	}
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	nodes := make([]localcluster.Node, opts.Nodes)
	for i := range nodes {
		nodes[i] = localcluster.Node{Name: fmt.Sprintf("gke-%s-%d", NodePool, i), Labels: map[string]string{NodePoolLabel: NodePool}}
	}
	h.Cluster, err = localcluster.Start(ctx, localcluster.Options{BinDir: opts.BinDir, Dir: opts.Dir, Nodes: nodes, Logf: opts.Logf})
	if err != nil {
		return nil, fmt.Errorf("starting the local cluster: %w", err)
	}
	cfg := h.Cluster.RESTConfig()
	if h.Client, err = client.New(cfg, client.Options{Scheme: h.Scheme}); err != nil {
		return nil, err
	}
	if _, err = envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{
		Paths:              []string{RepoPath("config", "crd", "bases"), fixture.Testdata("crds")},
		ErrorIfPathMissing: true,
	}); err != nil {
		return nil, fmt.Errorf("installing the CRDs: %w", err)
	}
	if h.repo, err = chartrepo.Serve(fixture.OfficialChart()); err != nil {
		return nil, fmt.Errorf("serving the official chart: %w", err)
	}
	h.ChartURL = h.repo.URL()
	h.Web = newWeb()
	return h, nil
}

// Stop ends the operator's dependencies: the chart repository and the cluster.
func (h *Harness) Stop() {
	if h.repo != nil {
		_ = h.repo.Close()
	}
	if h.Web != nil {
		h.Web.Close()
	}
	if h.Cluster != nil {
		_ = h.Cluster.Stop()
	}
	if h.tempDir != "" {
		_ = os.RemoveAll(h.tempDir)
	}
}

// Operator is the operator running in this process, as `make run` runs it.
type Operator struct {
	// MetricsURL is the metrics endpoint, with OperatorOptions.ServeMetrics.
	MetricsURL string

	cancel  context.CancelFunc
	done    chan struct{}
	err     error
	elected <-chan struct{}
	crashed atomic.Bool
}

// OperatorOptions configure StartOperatorWith.
type OperatorOptions struct {
	// LeaderElection, if set, makes the operator one of several replicas that elect a leader
	// through main's Lease (main's --leader-elect), with these timings; tests make them short.
	LeaderElection *LeaderElection
	// Crash, if set, is asked before each request the operator sends. When it says true, the
	// operator crashes there: that request and every later one fail, and its context is
	// cancelled without releasing the lease, so that a standby has to wait for it to expire.
	Crash func(*http.Request) bool
	// Configure changes the options main would pass the controllers (its flags).
	Configure func(*controllers.Options)
	// ServeMetrics serves the manager's metrics endpoint on a free loopback port, over plain
	// HTTP (main serves it over HTTPS with authentication); Operator.MetricsURL is where.
	ServeMetrics bool
}

// LeaderElection are the timings of controller-runtime's leader election.
type LeaderElection struct {
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// LeaseNamespace holds the leader election Lease of the harness's operators.
const LeaseNamespace = "default"

// StartOperator runs the manager with both controllers until Stop, the way main wires it;
// configure changes the options main would pass (its flags).
func (h *Harness) StartOperator(ctx context.Context, configure ...func(*controllers.Options)) (*Operator, error) {
	return h.StartOperatorWith(ctx, OperatorOptions{Configure: func(o *controllers.Options) {
		for _, c := range configure {
			c(o)
		}
	}})
}

// StartOperatorWith is StartOperator with options.
func (h *Harness) StartOperatorWith(ctx context.Context, opts OperatorOptions) (*Operator, error) {
	logger := zap.New(zap.WriteTo(h.operatorLog), zap.UseDevMode(true))
	ctx, cancel := context.WithCancel(logr.NewContext(ctx, logger))
	op := &Operator{cancel: cancel, done: make(chan struct{})}
	cfg := h.Cluster.RESTConfig()
	if opts.Crash != nil {
		// Every client of the manager, Helm's too, is made from this config.
		cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
			return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
				if op.crashed.Load() || opts.Crash(req) && op.crash() {
					return nil, errCrashed
				}
				return rt.RoundTrip(req)
			})
		})
	}
	mgrOpts := ctrl.Options{
		Logger: logger,
		// A restart is a new manager in the same process; its controllers reuse their names.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	}
	if le := opts.LeaderElection; le != nil {
		mgrOpts.LeaderElection = true
		mgrOpts.LeaderElectionID = controllers.LeaderElectionID
		mgrOpts.LeaderElectionNamespace = LeaseNamespace
		mgrOpts.LeaseDuration, mgrOpts.RenewDeadline, mgrOpts.RetryPeriod = &le.LeaseDuration, &le.RenewDeadline, &le.RetryPeriod
		// As after a crash: a stopped leader leaves the Lease to expire.
		mgrOpts.LeaderElectionReleaseOnCancel = false
	}
	if opts.ServeMetrics {
		addr, err := freeLoopbackAddress()
		if err != nil {
			cancel()
			return nil, err
		}
		mgrOpts.Metrics.BindAddress = addr
		op.MetricsURL = "http://" + addr + "/metrics"
	}
	setupOpts := controllers.Options{CloudSQL: h.cloudSQL, ServiceAddress: h.Web.Address}
	if opts.Configure != nil {
		opts.Configure(&setupOpts)
	}
	mgr, err := NewManager(cfg, mgrOpts, setupOpts)
	if err != nil {
		cancel()
		return nil, err
	}
	op.elected = mgr.Elected()
	go func() {
		op.err = mgr.Start(ctx)
		close(op.done)
	}()
	return op, nil
}

// NewManager makes the manager main makes, with both controllers set up, from mgrOpts and
// setupOpts as the caller sets them. StartOperatorWith runs it in this process; the benchmarks
// run it in a process of their own, to measure its memory and its requests alone.
func NewManager(cfg *rest.Config, mgrOpts ctrl.Options, setupOpts controllers.Options) (ctrl.Manager, error) {
	cfg = rest.CopyConfig(cfg)
	// main's client rate limit, so that timings here are main's.
	cfg.QPS, cfg.Burst = controllers.DefaultKubeAPIQPS, controllers.DefaultKubeAPIBurst
	mgrOpts.Scheme = Scheme()
	mgrOpts.Client = controllers.ClientOptions()
	if mgrOpts.Metrics.BindAddress == "" {
		mgrOpts.Metrics.BindAddress = "0"
	}
	mgr, err := ctrl.NewManager(cfg, mgrOpts)
	if err != nil {
		return nil, err
	}
	if err := controllers.Setup(mgr, setupOpts); err != nil {
		return nil, err
	}
	return mgr, nil
}

// freeLoopbackAddress is a loopback address with a port no one listens on now: the metrics
// server takes an address, not a listener.
func freeLoopbackAddress() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String(), nil
}

// errCrashed is what a crashed operator's requests fail with.
var errCrashed = errors.New("the operator crashed")

func (o *Operator) crash() bool {
	o.crashed.Store(true)
	o.cancel()
	return true
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// Crashed tells whether OperatorOptions.Crash crashed the operator.
func (o *Operator) Crashed() bool { return o.crashed.Load() }

// Elected is closed once the operator leads (at once without leader election).
func (o *Operator) Elected() <-chan struct{} { return o.elected }

// Done is closed once the manager has ended, stopped or not (a leader that cannot renew its
// Lease ends by itself).
func (o *Operator) Done() <-chan struct{} { return o.done }

// Stop cancels the manager, as SIGTERM would, and waits for it to end.
func (o *Operator) Stop() error {
	o.cancel()
	<-o.done
	if o.err != nil && !errors.Is(o.err, context.Canceled) {
		return o.err
	}
	return nil
}

// SampleMigration reads the migration users start from (config/samples), in namespace, pointed at
// the loopback chart repository and, for its analysis, at the web server, which answers 200
// until told otherwise.
func (h *Harness) SampleMigration(namespace string) (*v1alpha1.MastodonMigration, error) {
	raw, err := os.ReadFile(RepoPath("config", "samples", "migration_v1alpha1_mastodonmigration.yaml"))
	if err != nil {
		return nil, err
	}
	m := &v1alpha1.MastodonMigration{}
	if err := yaml.UnmarshalStrict(raw, m); err != nil {
		return nil, fmt.Errorf("the sample does not match the API: %w", err)
	}
	m.Namespace = namespace
	m.Spec.Release.Chart.Repository = h.ChartURL
	if m.Spec.Analysis.HTTP != nil {
		m.Spec.Analysis.HTTP.URL = h.Web.URL + "/health"
	}
	return m, nil
}

// DeployMastodon creates a namespace and applies the production layout of the Kustomize fixture,
// then waits until every Deployment has rolled out, as a live instance would be.
func (h *Harness) DeployMastodon(ctx context.Context, namespace string) ([]*unstructured.Unstructured, error) {
	return h.DeployLayout(ctx, namespace, fixture.LayoutProduction)
}

// DeployLayout is DeployMastodon with another of the fixture's layouts.
func (h *Harness) DeployLayout(ctx context.Context, namespace, layout string) ([]*unstructured.Unstructured, error) {
	if err := h.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		return nil, err
	}
	objs, err := fixture.Layout(layout)
	if err != nil {
		return nil, err
	}
	return objs, h.DeployObjects(ctx, namespace, objs)
}

// DeployObjects is DeployLayout with a layout's objects as a test changed them; the namespace
// must exist.
func (h *Harness) DeployObjects(ctx context.Context, namespace string, objs []*unstructured.Unstructured) error {
	if err := fixture.Apply(ctx, h.Client, namespace, objs); err != nil {
		return err
	}
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		if err := h.WaitCurrent(ctx, o.GroupVersionKind().GroupVersion().String(), o.GetKind(), namespace, o.GetName(), 2*time.Minute); err != nil {
			return err
		}
	}
	return nil
}

// WaitCurrent waits until kstatus calls an object Current: its spec observed and, for workloads,
// every replica updated and available.
func (h *Harness) WaitCurrent(ctx context.Context, apiVersion, kind, namespace, name string, timeout time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(apiVersion)
		u.SetKind(kind)
		if err := h.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, u); err != nil {
			last = err.Error()
			return false, client.IgnoreNotFound(err)
		}
		res, err := status.Compute(u)
		if err != nil {
			return false, err
		}
		last = res.Message
		return res.Status == status.CurrentStatus, nil
	})
	if err != nil {
		return fmt.Errorf("%s %s/%s did not become current (%s): %w", kind, namespace, name, last, err)
	}
	return nil
}
