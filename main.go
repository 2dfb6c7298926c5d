// Command manager runs the mastodon-operator: the MastodonMigration and MastodonRollback controllers.
package main

import (
	"flag"
	"os"
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

func main() {
	var (
		metricsAddr, probeAddr, chartCache string
		watchNamespaces, allowedRepos      stringList
		leaderElect                        bool
		concurrent, kubeAPIBurst           int
		kubeAPIQPS                         float64
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", "0", "Address of the metrics endpoint (:8443 for HTTPS); 0 turns it off.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the health and readiness probes.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader, so that only one replica reconciles at a time.")
	flag.StringVar(&chartCache, "chart-cache-dir", "", "Directory to keep downloaded charts in (default: none kept).")
	flag.IntVar(&concurrent, "concurrent", controllers.DefaultConcurrent,
		"How many migrations, and apart how many rollbacks, are reconciled at once.")
	flag.Float64Var(&kubeAPIQPS, "kube-api-qps", controllers.DefaultKubeAPIQPS, "Requests per second the operator may send the API server.")
	flag.IntVar(&kubeAPIBurst, "kube-api-burst", controllers.DefaultKubeAPIBurst, "Requests the operator may send the API server at once, beyond --kube-api-qps.")
	flag.Var(&watchNamespaces, "watch-namespaces",
		"Comma-separated namespaces whose migrations the operator reconciles, so that Roles in them are enough (default: the whole cluster).")
	flag.Var(&allowedRepos, "allowed-chart-repositories",
		"Comma-separated chart repositories (http(s):// or oci://, and what lies beneath them) migrations may install from (default: any).")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	setupLog := ctrl.Log.WithName("setup")

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))

	cfg := ctrl.GetConfigOrDie()
	cfg.QPS, cfg.Burst = float32(kubeAPIQPS), kubeAPIBurst
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme,
		Client: controllers.ClientOptions(),
		Metrics: metricsserver.Options{
			BindAddress: metricsAddr, SecureServing: true, FilterProvider: filters.WithAuthenticationAndAuthorization,
		},
		Cache:                  controllers.WatchNamespaces(watchNamespaces),
		HealthProbeBindAddress: probeAddr,
		LeaderElection:         leaderElect,
		LeaderElectionID:       controllers.LeaderElectionID,
	})
	if err != nil {
		setupLog.Error(err, "creating the manager")
		os.Exit(1)
	}
	setupOpts := controllers.Options{ChartCacheDir: chartCache, Concurrent: concurrent, AllowedChartRepositories: allowedRepos}
	if _, err := rest.InClusterConfig(); err == nil {
		// Inside the cluster the operator reaches Services by DNS, and checks their health.
		setupOpts.ServiceAddress = controllers.InCluster
	}
	if err := controllers.Setup(mgr, setupOpts); err != nil {
		setupLog.Error(err, "setting up the controllers")
		os.Exit(1)
	}
	utilruntime.Must(mgr.AddHealthzCheck("healthz", healthz.Ping))
	utilruntime.Must(mgr.AddReadyzCheck("readyz", healthz.Ping))

	setupLog.Info("starting the manager")
	// SIGTERM cancels the manager's context, and with it every step under way.
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		setupLog.Error(err, "running the manager")
		os.Exit(1)
	}
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
