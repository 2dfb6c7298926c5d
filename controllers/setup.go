package controllers

import (
	"context"

	"helm.sh/helm/v3/pkg/chart"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/mastodon-operator/mastodon-operator/internal/helm"
)

// Options configure the controllers.
type Options struct {
	// ChartCacheDir is where downloaded charts are kept; empty keeps none.
	ChartCacheDir string
}

// Setup registers both controllers with a manager. main, the envtest suite and the end-to-end
// tests all wire the operator through here, so they run the same thing.
func Setup(mgr ctrl.Manager, opts Options) error {
	var charts chartSource
	if opts.ChartCacheDir != "" {
		charts = append(charts, helm.WithCacheDir(opts.ChartCacheDir))
	}
	if err := (&MastodonMigrationReconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("mastodon-operator"),
		Charts:   charts,
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	return (&MastodonRollbackReconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("mastodon-operator"),
	}).SetupWithManager(mgr)
}

// chartSource loads charts through the Helm SDK with the operator's options.
type chartSource []helm.Option

func (o chartSource) LoadChart(ctx context.Context, ref helm.ChartRef) (*chart.Chart, error) {
	return helm.LoadChart(ctx, ref, o...)
}

// The metrics endpoint authenticates and authorizes its callers through the API server.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
