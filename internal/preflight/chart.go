package preflight

import (
	"context"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
)

// chartResolves checks that the chart repository answers and holds the chart at the version asked.
func chartResolves(ctx context.Context, in Input) ([]v1alpha1.Finding, error) {
	ref := in.Migration.Spec.Release.Chart
	if _, err := in.Charts.LoadChart(ctx, helm.ChartRef{Repository: ref.Repository, Name: ref.Name, Version: ref.Version}); err != nil {
		return []v1alpha1.Finding{finding("Chart/"+ref.Name, "%v: check spec.release.chart", err)}, nil
	}
	return nil, nil
}
