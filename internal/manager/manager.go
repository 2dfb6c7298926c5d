// Package manager builds the operator's manager from its command line. main runs it; the
// end-to-end tests run it with the arguments of the chart's Deployment, so that what they prove
// is what the chart runs.
package manager

import (
	"flag"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/controllers"
)

// Flags are the manager's command line.
type Flags struct {
	MetricsAddress, ProbeAddress, ChartCacheDir string
	WatchNamespaces, AllowedChartRepositories   []string
	LeaderElect                                 bool
	Concurrent, KubeAPIBurst                    int
	KubeAPIQPS                                  float64
	// Log are zap's flags (--zap-encoder, --zap-log-level, ...).
	Log zap.Options
}

// Parse binds the manager's flags to fs and parses args (without the program's name). main
// passes flag.CommandLine, where controller-runtime registers --kubeconfig.
func Parse(fs *flag.FlagSet, args []string) (*Flags, error) {
	f := &Flags{}
	fs.StringVar(&f.MetricsAddress, "metrics-bind-address", "0", "Address of the metrics endpoint (:8443 for HTTPS); 0 turns it off.")
	fs.StringVar(&f.ProbeAddress, "health-probe-bind-address", ":8081", "Address of the health and readiness probes.")
	fs.BoolVar(&f.LeaderElect, "leader-elect", false, "Elect a leader, so that only one replica reconciles at a time.")
	fs.StringVar(&f.ChartCacheDir, "chart-cache-dir", "", "Directory to keep downloaded charts in (default: none kept).")
	fs.IntVar(&f.Concurrent, "concurrent", controllers.DefaultConcurrent,
		"How many migrations, and apart how many rollbacks, are reconciled at once.")
	fs.Float64Var(&f.KubeAPIQPS, "kube-api-qps", controllers.DefaultKubeAPIQPS, "Requests per second the operator may send the API server.")
	fs.IntVar(&f.KubeAPIBurst, "kube-api-burst", controllers.DefaultKubeAPIBurst, "Requests the operator may send the API server at once, beyond --kube-api-qps.")
	fs.Var((*stringList)(&f.WatchNamespaces), "watch-namespaces",
		"Comma-separated namespaces whose migrations the operator reconciles, so that Roles in them are enough (default: the whole cluster).")
	fs.Var((*stringList)(&f.AllowedChartRepositories), "allowed-chart-repositories",
		"Comma-separated chart repositories (http(s):// or oci://, and what lies beneath them) migrations may install from (default: any).")
	f.Log.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return f, nil
}

// Scheme knows the built-in kinds and the operator's.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}

// New makes the manager the flags describe, with both controllers and the health checks: the
// metrics endpoint over HTTPS (a self-signed certificate) with the API server's authentication
// and authorization, the cache limited to --watch-namespaces. In the cluster, Verify reaches
// Services by DNS. configure, if not nil, changes the options before the manager is made (the
// tests: loopback addresses, a log file, the Lease's namespace outside the cluster).
func (f *Flags) New(cfg *rest.Config, configure func(*ctrl.Options, *controllers.Options)) (ctrl.Manager, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = float32(f.KubeAPIQPS), f.KubeAPIBurst
	opts := ctrl.Options{
		Scheme: Scheme(),
		Client: controllers.ClientOptions(),
		Metrics: metricsserver.Options{
			BindAddress: f.MetricsAddress, SecureServing: true, FilterProvider: filters.WithAuthenticationAndAuthorization,
		},
		Cache:                  controllers.WatchNamespaces(f.WatchNamespaces),
		HealthProbeBindAddress: f.ProbeAddress,
		LeaderElection:         f.LeaderElect,
		LeaderElectionID:       controllers.LeaderElectionID,
	}
	setup := controllers.Options{ChartCacheDir: f.ChartCacheDir, Concurrent: f.Concurrent, AllowedChartRepositories: f.AllowedChartRepositories}
	if _, err := rest.InClusterConfig(); err == nil {
		setup.ServiceAddress = controllers.InCluster
	}
	if configure != nil {
		configure(&opts, &setup)
	}
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	if err := controllers.Setup(mgr, setup); err != nil {
		return nil, fmt.Errorf("setting up the controllers: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}

// stringList is a flag of comma-separated values, which may also be repeated.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}
