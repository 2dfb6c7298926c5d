package preflight

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// extraResources checks that every extra object to snapshot exists, and that its kind is served
// (a BackendConfig needs GKE's CRD).
func extraResources(ctx context.Context, in Input) ([]v1alpha1.Finding, error) {
	var findings []v1alpha1.Finding
	for _, ref := range in.Migration.Spec.Source.ExtraResources {
		object := ref.Kind + "/" + ref.Name
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(ref.APIVersion)
		u.SetKind(ref.Kind)
		err := in.Client.Get(ctx, client.ObjectKey{Namespace: in.Migration.Namespace, Name: ref.Name}, u)
		switch {
		case meta.IsNoMatchError(err):
			findings = append(findings, finding(object,
				"the API server does not serve kind %s in %s: is its CRD installed? check spec.source.extraResources",
				ref.Kind, ref.APIVersion))
		case apierrors.IsNotFound(err):
			findings = append(findings, finding(object, "%s %s not found in namespace %s: check spec.source.extraResources",
				ref.Kind, ref.Name, in.Migration.Namespace))
		case err != nil:
			return nil, err
		}
	}
	return findings, nil
}
