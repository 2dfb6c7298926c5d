package preflight

import (
	"context"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// sourceIngress checks that the Ingress the spec names exists.
func sourceIngress(ctx context.Context, in Input) ([]v1alpha1.Finding, error) {
	name := in.Migration.Spec.Source.Ingress
	if name == "" {
		return nil, nil
	}
	var ing networkingv1.Ingress
	err := in.Client.Get(ctx, client.ObjectKey{Namespace: in.Migration.Namespace, Name: name}, &ing)
	if apierrors.IsNotFound(err) {
		return []v1alpha1.Finding{finding("Ingress/"+name,
			"Ingress %s not found in namespace %s: check spec.source.ingress", name, in.Migration.Namespace)}, nil
	}
	return nil, err
}
