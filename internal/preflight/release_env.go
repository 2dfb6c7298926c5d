package preflight

import (
	"context"
	"maps"
	"regexp"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/envparity"
)

// envParity compares the environment of each source container with that of its counterpart in
// the release, as the kubelet would build them (envparity.Effective): web with web, streaming
// with streaming, each Sidekiq Deployment with its worker. The old side reads the ConfigMaps and
// Secrets of the cluster, the new side the chart's own where it renders them. Every difference
// whose variable is not in spec.preflight.acceptEnvChanges is a finding. Secret values are
// compared, never shown.
//
// A pod whose environment cannot be resolved (a missing envFrom source) is left out: the
// source's is SourceDeployments' concern, the release's ReleaseReferences'.
func envParity(ctx context.Context, in Input) ([]v1alpha1.Finding, error) {
	p := in.release(ctx)
	if p.manifests == nil {
		return nil, nil
	}
	rendered, err := p.manifests.Deployments()
	if err != nil {
		return nil, err
	}
	cms, secrets, err := renderedConfig(p.manifests)
	if err != nil {
		return nil, err
	}
	// Two views: the cluster's objects for the old pods, the chart's over them for the new.
	oldKeys := newConfigKeys(in, nil, nil)
	newKeys := newConfigKeys(in, cms, secrets)

	type pair struct {
		old  *appsv1.Deployment
		role string
		new  *appsv1.Deployment
	}
	var pairs []pair
	for _, ref := range SourceDeployments(in.Migration) {
		d, err := sourceDeployment(ctx, in, ref.Name)
		if err != nil {
			return nil, err
		}
		if d == nil {
			continue
		}
		pairs = append(pairs, pair{old: d, role: ref.Component, new: counterpart(rendered, ref.Component, d)})
	}

	accepted := in.Migration.Spec.Preflight.AcceptEnvChanges
	var findings []v1alpha1.Finding
	for _, pr := range pairs {
		if pr.new == nil {
			continue // the release lacks the component: TargetPorts and the switch report it
		}
		oldC, newC := sourceContainer(pr.old.Spec.Template.Spec, pr.role), mastodonContainer(pr.new.Spec.Template.Spec)
		if oldC == nil || newC == nil {
			continue
		}
		if err := oldKeys.lookupRefs(ctx, pr.old.Spec.Template.Spec); err != nil {
			return nil, err
		}
		if err := newKeys.lookupRefs(ctx, pr.new.Spec.Template.Spec); err != nil {
			return nil, err
		}
		oldCMs, oldSecrets := oldKeys.found()
		newCMs, newSecrets := newKeys.found()
		oldEnv, err := envparity.Effective(pr.old.Spec.Template.Spec, oldC.Name, oldCMs, oldSecrets)
		if err != nil {
			continue
		}
		newEnv, err := envparity.Effective(pr.new.Spec.Template.Spec, newC.Name, newCMs, newSecrets)
		if err != nil {
			continue
		}
		// Diff resolves Secret values by name: the chart's Secrets over the cluster's, as the
		// new pods see them, and the cluster's for names only the old pods use.
		both := maps.Clone(oldSecrets)
		maps.Copy(both, newSecrets)
		for _, d := range envparity.Diff(oldEnv, newEnv, both) {
			if slices.Contains(accepted, d.Name) || slices.Contains(accepted, pr.role+"/"+d.Name) {
				continue
			}
			findings = append(findings, finding("Deployment/"+pr.old.Name,
				"env %s: %s (container %s of Deployment %s, against %s of Deployment %s; Secret values compared, never shown): if the change is intended add %s/%s to spec.preflight.acceptEnvChanges, else fix spec.release.values",
				d.Name, describe(d), oldC.Name, pr.old.Name, newC.Name, pr.new.Name, pr.role, d.Name))
		}
	}
	return findings, nil
}

// describe says what a difference is: missing old, added new, changed old → new.
func describe(d envparity.Difference) string {
	switch d.Kind {
	case envparity.KindMissing:
		return "missing " + d.Old
	case envparity.KindAdded:
		return "added " + d.New
	default:
		return "changed " + d.Old + " → " + d.New
	}
}

// counterpart finds the release's Deployment of a source Deployment's component: web, streaming,
// and for Sidekiq the worker named after the Deployment (as values.Generate names it) or the
// only worker.
func counterpart(rendered map[string]*appsv1.Deployment, role string, src *appsv1.Deployment) *appsv1.Deployment {
	if role != "sidekiq" {
		return rendered[role]
	}
	var workers []string
	for c := range rendered {
		if strings.HasPrefix(c, "sidekiq-") {
			workers = append(workers, c)
		}
	}
	if len(workers) == 1 {
		return rendered[workers[0]]
	}
	for _, name := range workerNames(src.Name) {
		if d := rendered["sidekiq-"+name]; d != nil {
			return d
		}
	}
	return nil
}

var nonName = regexp.MustCompile(`[^a-z0-9-]+`)

// workerNames are the chart worker names values.Generate gives a Sidekiq Deployment (with and
// without queues).
func workerNames(deploy string) []string {
	n := nonName.ReplaceAllString(strings.ToLower(deploy), "-")
	n = strings.TrimPrefix(n, "mastodon-")
	n = strings.TrimPrefix(n, "sidekiq-")
	n = strings.TrimSuffix(n, "-sidekiq")
	if len(n) > 30 {
		n = n[:30]
	}
	n = strings.Trim(n, "-")
	if n == "" || n == "sidekiq" || n == "mastodon" {
		return []string{"worker", "all-queues"}
	}
	return []string{n}
}

// mastodonContainer is the Mastodon container of a rendered pod: the chart puts it first
// (mastodon-web, mastodon-streaming, mastodon), before any sidecar such as prometheus-exporter.
func mastodonContainer(pod corev1.PodSpec) *corev1.Container { return container(pod, "") }

// sourceContainer picks the Mastodon container of a source pod as values.Generate does: the
// only one, else one named after the component, else one running a mastodon image, else the
// first.
func sourceContainer(pod corev1.PodSpec, role string) *corev1.Container {
	cs := pod.Containers
	if len(cs) == 1 {
		return &cs[0]
	}
	names := map[string][]string{"web": {"web"}, "streaming": {"streaming"}, "sidekiq": {"sidekiq", "worker"}}[role]
	for _, name := range names {
		for i := range cs {
			if cs[i].Name == name {
				return &cs[i]
			}
		}
	}
	for i := range cs {
		if strings.Contains(cs[i].Image, "mastodon") {
			return &cs[i]
		}
	}
	return container(pod, "")
}
