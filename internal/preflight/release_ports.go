package preflight

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/traffic"
)

// targetPorts checks that every port of each source Service (spec.source.services, or the
// Services that select source pods) resolves on the pods of the release's Deployment of the
// same component, as it must once the switch points the Service at them.
func targetPorts(ctx context.Context, in Input) ([]v1alpha1.Finding, error) {
	p := in.release(ctx)
	if p.manifests == nil {
		return nil, nil
	}
	rendered, err := p.manifests.Deployments()
	if err != nil {
		return nil, err
	}
	source := map[traffic.Component]*appsv1.Deployment{}
	for c, name := range map[traffic.Component]string{
		traffic.Web: in.Migration.Spec.Source.Web.Deployment, traffic.Streaming: in.Migration.Spec.Source.Streaming.Deployment,
	} {
		d, err := sourceDeployment(ctx, in, name)
		if err != nil {
			return nil, err
		}
		if d != nil {
			source[c] = d
		}
	}
	services, err := sourceServiceList(ctx, in, source)
	if err != nil {
		return nil, err
	}
	var findings []v1alpha1.Finding
	for _, s := range services {
		var comps []traffic.Component
		for _, c := range traffic.Components {
			if d := source[c]; d != nil && len(s.Spec.Selector) > 0 &&
				labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				comps = append(comps, c)
			}
		}
		if len(comps) != 1 {
			continue // no source pods (a media proxy), or both: the traffic switch reports that
		}
		d := rendered[string(comps[0])]
		if d == nil {
			findings = append(findings, finding("Service/"+s.Name,
				"serves %s, but the release renders no %s Deployment to move it to: check spec.release.values", comps[0], comps[0]))
			continue
		}
		for _, pr := range traffic.CheckPorts(s, &d.Spec.Template) {
			findings = append(findings, finding(pr.Object,
				"%s, in Deployment %s of the release: once traffic moves, the Service would have no endpoints on that port; make the Service target a port the release's pods have (by number or by name), or leave it out of spec.source.services",
				pr.Message, d.Name))
		}
	}
	return findings, nil
}

// sourceServiceList reads the Services the spec names (those missing are SourceServices'
// finding), or lists the namespace's Services that select source pods.
func sourceServiceList(ctx context.Context, in Input, source map[traffic.Component]*appsv1.Deployment) ([]corev1.Service, error) {
	ns := in.Migration.Namespace
	if names := in.Migration.Spec.Source.Services; len(names) > 0 {
		var out []corev1.Service
		for _, name := range names {
			var s corev1.Service
			err := in.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s)
			if client.IgnoreNotFound(err) != nil {
				return nil, err
			}
			if err == nil {
				out = append(out, s)
			}
		}
		return out, nil
	}
	var list corev1.ServiceList
	if err := in.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var deployments []*appsv1.Deployment
	for _, c := range traffic.Components {
		deployments = append(deployments, source[c])
	}
	return traffic.SourceServices(list.Items, deployments), nil
}
