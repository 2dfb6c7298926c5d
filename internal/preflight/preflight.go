// Package preflight is the pre-migration checklist as code: a chain of rules, each of which looks
// at the cluster and the migration's spec and reports what it finds wrong, before anything changes.
package preflight

import (
	"context"
	"fmt"

	"helm.sh/helm/v3/pkg/chart"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
)

// ChartSource loads the chart a migration installs.
type ChartSource interface {
	LoadChart(ctx context.Context, ref helm.ChartRef) (*chart.Chart, error)
}

// Input is what every rule may look at.
type Input struct {
	// Client reads the cluster; rules never write.
	Client    client.Reader
	Migration *v1alpha1.MastodonMigration
	Charts    ChartSource

	// Values returns the merged chart values the release would get (generated, spec.release.values,
	// valuesFrom). The release rules (ReleaseRenders and those after it) render the chart with
	// them; when Values is nil they are skipped. An error of Values is a finding of
	// ReleaseRenders, not a reason to retry.
	Values func(ctx context.Context) (map[string]any, error)
	// SecretEnv returns the variables the operator adds to the release's Mastodon containers
	// and hook Jobs from Secret keys (spec.release.secretEnv and the generated ones); the
	// release rules render the chart with them, as the install does. Nil: none.
	SecretEnv func(ctx context.Context) ([]v1alpha1.SecretEnvVar, error)

	// Databases lists the databases of a Cloud SQL instance (the Admin API); when it is nil,
	// CloudSQLDatabases is skipped.
	Databases func(ctx context.Context, project, instance string) ([]string, error)

	// Writer makes the server-side dry-run creates of ReleaseDryRun (client.DryRunAll: nothing is
	// stored). When it is nil, ReleaseDryRun is skipped.
	Writer client.Client

	// preview is the release rendered once per Run and shared by the release rules; Run sets it.
	// A rule called without it (in a test) renders for itself.
	preview *releasePreview
}

// Rule is one item of the checklist. It returns the problems it found; an error means it could
// not look (the API server did not answer), which is retried rather than reported as a finding.
type Rule struct {
	Name  string
	Check func(ctx context.Context, in Input) ([]v1alpha1.Finding, error)
}

// Checklist is the rules every strategy runs, in the order a person would check them.
func Checklist() []Rule {
	return []Rule{
		{Name: "SourceDeployments", Check: sourceDeployments},
		{Name: "SourceServices", Check: sourceServices},
		{Name: "SourceIngress", Check: sourceIngress},
		{Name: "ExtraResources", Check: extraResources},
		{Name: "GitOpsOwners", Check: gitOpsOwners},
		{Name: "Chart", Check: chartResolves},
		{Name: "ReleaseRenders", Check: releaseRenders},
		{Name: "ReleaseReferences", Check: releaseReferences},
		{Name: "ReleaseCollisions", Check: releaseCollisions},
		{Name: "ReleaseDryRun", Check: releaseDryRun},
		{Name: "Image", Check: imageUnchanged},
		{Name: "Version", Check: versionJump},
		{Name: "EnvParity", Check: envParity},
		{Name: "TargetPorts", Check: targetPorts},
		{Name: "OneScheduler", Check: oneScheduler},
		{Name: "CloudSQLDatabases", Check: cloudSQLDatabases},
	}
}

// Run runs every rule and returns all findings, so one pass reports every problem at once.
// The chart is loaded and the release rendered at most once per Run.
func Run(ctx context.Context, in Input, rules []Rule) ([]v1alpha1.Finding, error) {
	if in.Charts != nil {
		in.Charts = &onceCharts{ChartSource: in.Charts}
	}
	in.preview = &releasePreview{}
	var findings []v1alpha1.Finding
	for _, r := range rules {
		found, err := r.Check(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("preflight check %s: %w", r.Name, err)
		}
		for i := range found {
			found[i].Check = r.Name
		}
		findings = append(findings, found...)
	}
	return findings, nil
}

func finding(object, format string, args ...any) v1alpha1.Finding {
	return v1alpha1.Finding{Object: object, Message: fmt.Sprintf(format, args...)}
}
