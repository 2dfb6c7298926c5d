package preflight

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/workload"
)

// sourceDeployments checks that every source Deployment exists and has finished rolling out:
// a migration away from a stack that is not running would leave nothing to roll back to.
func sourceDeployments(ctx context.Context, in Input) ([]v1alpha1.Finding, error) {
	var findings []v1alpha1.Finding
	for _, ref := range SourceDeployments(in.Migration) {
		object := "Deployment/" + ref.Name
		var d appsv1.Deployment
		err := in.Client.Get(ctx, client.ObjectKey{Namespace: in.Migration.Namespace, Name: ref.Name}, &d)
		if apierrors.IsNotFound(err) {
			findings = append(findings, finding(object, "Deployment %s (%s) not found in namespace %s: check %s",
				ref.Name, ref.Component, in.Migration.Namespace, ref.Field))
			continue
		}
		if err != nil {
			return nil, err
		}
		current, message, err := workload.RolledOut(&d)
		if err != nil {
			return nil, err
		}
		if !current {
			findings = append(findings, finding(object, "Deployment %s is not available: %s", ref.Name, message))
		}
	}
	return findings, nil
}

// DeploymentRef is a source Deployment with where the spec names it.
type DeploymentRef struct {
	Name      string
	Component string // web, streaming or sidekiq
	Field     string // the spec field, for messages
}

// SourceDeployments lists the source Deployments of a migration.
func SourceDeployments(m *v1alpha1.MastodonMigration) []DeploymentRef {
	refs := []DeploymentRef{
		{Name: m.Spec.Source.Web.Deployment, Component: "web", Field: "spec.source.web.deployment"},
		{Name: m.Spec.Source.Streaming.Deployment, Component: "streaming", Field: "spec.source.streaming.deployment"},
	}
	for i, s := range m.Spec.Source.Sidekiq {
		refs = append(refs, DeploymentRef{Name: s.Deployment, Component: "sidekiq",
			Field: fmt.Sprintf("spec.source.sidekiq[%d].deployment", i)})
	}
	return refs
}
