package preflight

import (
	"context"
	"errors"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// releaseDryRun asks the API server to create every rendered object (resources and hooks) that
// does not exist yet, with dryRun=All: validation, defaulting and admission (webhooks, quota,
// pod security) run, nothing is stored. The server's refusal is the finding. Without
// Input.Writer the rule is skipped. Objects that exist are ReleaseCollisions' concern.
func releaseDryRun(ctx context.Context, in Input) ([]v1alpha1.Finding, error) {
	if in.Writer == nil {
		return nil, nil
	}
	p := in.release(ctx)
	if p.manifests == nil {
		return nil, nil
	}
	var findings []v1alpha1.Finding
	for _, obj := range allObjects(p.manifests) {
		cur, err := existing(ctx, in, obj)
		if err != nil {
			return nil, err
		}
		if cur != nil {
			continue
		}
		u := obj.DeepCopy()
		u.SetNamespace(in.Migration.Namespace)
		err = in.Writer.Create(ctx, u, client.DryRunAll)
		var status apierrors.APIStatus
		switch {
		case err == nil, apierrors.IsAlreadyExists(err):
		case meta.IsNoMatchError(err):
			findings = append(findings, finding(objectName(obj),
				"the API server does not serve kind %s in %s, which the chart renders: install its CRD or turn the feature off in spec.release.values",
				obj.GetKind(), obj.GetAPIVersion()))
		case errors.As(err, &status) && !retriable(err):
			findings = append(findings, finding(objectName(obj),
				"the API server refuses to create it (dry run): %v: fix spec.release.values or what refuses it (admission policy, quota)", err))
		default:
			return nil, err
		}
	}
	return findings, nil
}

// retriable reports API errors that say nothing about the object: try again later.
func retriable(err error) bool {
	return apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err) || apierrors.IsUnexpectedServerError(err)
}
