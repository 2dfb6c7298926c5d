package preflight

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// sourceServices checks that every Service the spec names exists; these are the Services whose
// selectors the traffic switch will move.
func sourceServices(ctx context.Context, in Input) ([]v1alpha1.Finding, error) {
	var findings []v1alpha1.Finding
	for _, name := range in.Migration.Spec.Source.Services {
		var s corev1.Service
		err := in.Client.Get(ctx, client.ObjectKey{Namespace: in.Migration.Namespace, Name: name}, &s)
		if apierrors.IsNotFound(err) {
			findings = append(findings, finding("Service/"+name,
				"Service %s not found in namespace %s: check spec.source.services", name, in.Migration.Namespace))
			continue
		}
		if err != nil {
			return nil, err
		}
	}
	return findings, nil
}
