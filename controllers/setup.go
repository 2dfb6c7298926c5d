package controllers

import (
	"context"
	"fmt"

	"google.golang.org/api/option"
	"helm.sh/helm/v3/pkg/chart"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	"github.com/mastodon-operator/mastodon-operator/internal/database"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
	"github.com/mastodon-operator/mastodon-operator/internal/notify"
)

// Options configure the controllers.
type Options struct {
	// Concurrent is how many migrations (and, apart, rollbacks) are reconciled at once; 0 is
	// DefaultConcurrent. Helm's installs and uninstalls wait in the background, so a worker is
	// held only while a step looks and acts.
	Concurrent int
	// ChartCacheDir is where downloaded charts are kept; empty keeps none.
	ChartCacheDir string
	// CloudSQL are the options of the Cloud SQL Admin API client (tests point it at a local server).
	CloudSQL []option.ClientOption
	// CloudMonitoring are the options of the Cloud Monitoring client (tests point it at a local
	// server).
	CloudMonitoring []option.ClientOption
	// ServiceAddress is host:port of a Service's port (InCluster in the cluster); nil when the
	// operator cannot reach Services, and Verify relies on the pods' readiness probes.
	ServiceAddress func(namespace, name string, port int32) string
	// Notifications tune the notification queues and retries (tests make them short).
	Notifications notify.Options
	// AllowedChartRepositories are the chart repositories migrations may install from
	// (--allowed-chart-repositories); empty allows any. A refused one is a Blocks finding of
	// preflight, before anything is downloaded.
	AllowedChartRepositories []string
}

// InCluster reaches a Service through the cluster's DNS.
func InCluster(namespace, name string, port int32) string {
	return fmt.Sprintf("%s.%s.svc:%d", name, namespace, port)
}

// ClientOptions keep Secrets and ConfigMaps out of the manager's cache: the operator reads a few
// of them in a few namespaces, and caching every Secret of a large cluster would cost memory and
// widen what the process holds.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}, &corev1.ConfigMap{}}}}
}

// LeaderElectionID names the Lease through which replicas elect the one that reconciles.
const LeaderElectionID = "mastodon-operator.migration.mastodon-operator.io"

// The client rate limit of the manager's clients, Helm's included (main's --kube-api-qps and
// --kube-api-burst): Flux's controllers' defaults. controller-runtime's own (20 QPS, burst 30)
// paced ten migrations at once to half again the time of one (make bench); the API server's
// priority and fairness protects it from a client that asks for more.
const (
	DefaultKubeAPIQPS   = 50
	DefaultKubeAPIBurst = 300
)

// DefaultConcurrent is the number of workers of each controller when Options.Concurrent is 0.
const DefaultConcurrent = 4

// Setup registers both controllers with a manager. main, the envtest suite and the end-to-end
// tests all wire the operator through here, so they run the same thing.
func Setup(mgr ctrl.Manager, opts Options) error {
	workers := controller.Options{MaxConcurrentReconciles: opts.Concurrent}
	if workers.MaxConcurrentReconciles <= 0 {
		workers.MaxConcurrentReconciles = DefaultConcurrent
	}
	charts := chartSource{allowed: opts.AllowedChartRepositories}
	if opts.ChartCacheDir != "" {
		charts.opts = append(charts.opts, helm.WithCacheDir(opts.ChartCacheDir))
	}
	helmClients, err := helm.NewClients(mgr.GetConfig())
	if err != nil {
		return err
	}
	background := newHelmActions()
	if err := mgr.Add(background); err != nil {
		return err
	}
	notifier := notify.New(opts.Notifications, mgr.GetLogger().WithName("notify"))
	if err := mgr.Add(notifier); err != nil {
		return err
	}
	if err := (&MastodonMigrationReconciler{
		Client:          mgr.GetClient(),
		APIReader:       mgr.GetAPIReader(),
		Recorder:        mgr.GetEventRecorder("mastodon-operator"),
		Charts:          charts,
		HelmClients:     helmClients,
		ServiceAddress:  opts.ServiceAddress,
		Helm:            background,
		Notifier:        notifier,
		CloudMonitoring: opts.CloudMonitoring,
		CloudSQL: func(ctx context.Context) (*database.CloudSQL, error) {
			return database.NewCloudSQL(ctx, opts.CloudSQL...)
		},
	}).SetupWithManager(mgr, workers); err != nil {
		return err
	}
	return (&MastodonRollbackReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("mastodon-operator"),
	}).SetupWithManager(mgr, workers)
}

// chartSource loads charts through the Helm SDK with the operator's options, from the allowed
// repositories only.
type chartSource struct {
	opts    []helm.Option
	allowed helm.RepositoryAllowlist
}

func (c chartSource) LoadChart(ctx context.Context, ref helm.ChartRef) (*chart.Chart, error) {
	if err := c.allowed.Check(ref.Repository); err != nil {
		return nil, err
	}
	return helm.LoadChart(ctx, ref, c.opts...)
}

// WatchNamespaces makes the manager's cache watch only namespaces (--watch-namespaces), so that
// Roles in them are enough; empty watches the whole cluster.
func WatchNamespaces(namespaces []string) cache.Options {
	if len(namespaces) == 0 {
		return cache.Options{}
	}
	byName := map[string]cache.Config{}
	for _, ns := range namespaces {
		byName[ns] = cache.Config{}
	}
	return cache.Options{DefaultNamespaces: byName}
}

// The metrics endpoint authenticates and authorizes its callers through the API server.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
