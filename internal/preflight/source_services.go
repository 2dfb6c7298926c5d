package preflight

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// sourceServices checks that every Service the spec names exists and has a ready endpoint; these
// are the Services whose selectors the traffic switch will move, and one that routes to nothing is
// an outage already, not a stack to migrate from.
func sourceServices(ctx context.Context, in Input) ([]v1alpha1.Finding, error) {
	var findings []v1alpha1.Finding
	for _, name := range in.Migration.Spec.Source.Services {
		object := "Service/" + name
		var s corev1.Service
		err := in.Client.Get(ctx, client.ObjectKey{Namespace: in.Migration.Namespace, Name: name}, &s)
		if apierrors.IsNotFound(err) {
			findings = append(findings, finding(object,
				"Service %s not found in namespace %s: check spec.source.services", name, in.Migration.Namespace))
			continue
		}
		if err != nil {
			return nil, err
		}
		// Without a selector (ExternalName, or endpoints managed by hand) Kubernetes maintains no
		// EndpointSlices from pods, so there is nothing to count.
		if len(s.Spec.Selector) == 0 {
			continue
		}
		n, err := readyEndpoints(ctx, in.Client, in.Migration.Namespace, name)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			findings = append(findings, finding(object,
				"Service %s has no ready endpoint (selector %s): the traffic switch would move users away from nothing; check that its pods are Ready and match the selector",
				name, labels.Set(s.Spec.Selector).String()))
		}
	}
	return findings, nil
}

// readyEndpoints counts the ready endpoints of a Service over its EndpointSlices.
func readyEndpoints(ctx context.Context, c client.Reader, namespace, service string) (int, error) {
	var slices discoveryv1.EndpointSliceList
	if err := c.List(ctx, &slices, client.InNamespace(namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: service}); err != nil {
		return 0, err
	}
	n := 0
	for i := range slices.Items {
		n += ReadyEndpoints(&slices.Items[i])
	}
	return n, nil
}

// ReadyEndpoints counts the ready endpoints of one EndpointSlice.
func ReadyEndpoints(s *discoveryv1.EndpointSlice) int {
	n := 0
	for _, e := range s.Endpoints {
		// A nil Ready means unknown, which consumers treat as ready.
		if e.Conditions.Ready == nil || *e.Conditions.Ready {
			n++
		}
	}
	return n
}
