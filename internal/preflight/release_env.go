package preflight

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/envparity"
	"github.com/mastodon-operator/mastodon-operator/internal/values"
)

// envParity compares the environment of each source container with that of its counterpart in
// the release, as the kubelet would build them (envparity.Effective): web with web, streaming
// with streaming, each Sidekiq Deployment with its worker. The old side reads the ConfigMaps and
// Secrets of the cluster, the new side the chart's own where it renders them. Each variable that
// differs is one finding, naming every component it differs in, classed by envparity.Classify
// and naming the values key that fixes it; a Change in spec.preflight.acceptEnvChanges (NAME,
// or component/NAME) is left out, a Block never is. Secret values are compared, never shown.
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

	refs := SourceDeployments(in.Migration)
	sources := make([]*appsv1.Deployment, len(refs))
	var sidekiq []*appsv1.Deployment
	for i, ref := range refs {
		if sources[i], err = sourceDeployment(ctx, in, ref.Name); err != nil {
			return nil, err
		}
		if sources[i] != nil && ref.Component == "sidekiq" {
			sidekiq = append(sidekiq, sources[i])
		}
	}
	// The chart's worker of each old worker, by the names values.Generate gives them; none
	// when an old worker has no container to read (SourceDeployments reports it).
	workers := map[string]string{}
	if names, err := values.WorkerNames(sidekiq); err == nil {
		for i, d := range sidekiq {
			workers[d.Name] = names[i]
		}
	}

	var comps []*envComponent
	for i, ref := range refs {
		src := sources[i]
		if src == nil {
			continue
		}
		rel := counterpart(rendered, ref.Component, workers[src.Name])
		if rel == nil {
			continue // the release lacks the component: TargetPorts and the switch report it
		}
		oldC, newC := sourceContainer(src.Spec.Template.Spec, ref.Component), mastodonContainer(rel.Spec.Template.Spec)
		if oldC == nil || newC == nil {
			continue
		}
		if err := oldKeys.lookupRefs(ctx, src.Spec.Template.Spec); err != nil {
			return nil, err
		}
		if err := newKeys.lookupRefs(ctx, rel.Spec.Template.Spec); err != nil {
			return nil, err
		}
		oldCMs, oldSecrets := oldKeys.found()
		newCMs, newSecrets := newKeys.found()
		c := &envComponent{role: ref.Component, old: src.Name, new: rel.Name}
		if c.oldEnv, err = envparity.Effective(src.Spec.Template.Spec, oldC.Name, oldCMs, oldSecrets); err != nil {
			continue
		}
		if c.newEnv, err = envparity.Effective(rel.Spec.Template.Spec, newC.Name, newCMs, newSecrets); err != nil {
			continue
		}
		// Diff resolves Secret values by name: the chart's Secrets over the cluster's, as the
		// new pods see them, and the cluster's for names only the old pods use.
		both := maps.Clone(oldSecrets)
		maps.Copy(both, newSecrets)
		c.diffs = envparity.Diff(c.oldEnv, c.newEnv, both)
		comps = append(comps, c)
	}

	accepted := in.Migration.Spec.Preflight.AcceptEnvChanges
	byName := map[string][]envPart{}
	for _, c := range comps {
		for _, d := range c.diffs {
			class, reason := envparity.Classify(c.role, d, c.oldEnv)
			if class == v1alpha1.FindingChanges && (slices.Contains(accepted, d.Name) || slices.Contains(accepted, c.role+"/"+d.Name)) {
				continue
			}
			byName[d.Name] = append(byName[d.Name], envPart{envComponent: c, diff: d, class: class, reason: reason})
		}
	}
	var chartValues map[string]any
	if p.chart != nil {
		chartValues = p.chart.Values
	}
	var findings []v1alpha1.Finding
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		findings = append(findings, envFinding(name, byName[name], comps, chartValues, p.secretEnv))
	}
	return findings, nil
}

// envComponent is one source Deployment and its counterpart in the release.
type envComponent struct {
	role, old, new string
	oldEnv, newEnv map[string]envparity.Value
	diffs          []envparity.Difference
}

func (c *envComponent) String() string { return c.role + " (" + c.old + " → " + c.new + ")" }

// envPart is a variable's difference in one component.
type envPart struct {
	*envComponent
	diff   envparity.Difference
	class  v1alpha1.FindingClass
	reason string
}

// envSeverity orders the classes, Blocks first.
var envSeverity = map[v1alpha1.FindingClass]int{v1alpha1.FindingBlocks: 0, v1alpha1.FindingChanges: 1, v1alpha1.FindingInformational: 2}

// envFinding is one variable's finding: what differs in which components, with the class and
// reason of each, its class the gravest of them, and the fix.
func envFinding(name string, parts []envPart, comps []*envComponent, chartValues map[string]any, secretEnv []v1alpha1.SecretEnvVar) v1alpha1.Finding {
	worst := slices.MinFunc(parts, func(a, b envPart) int { return envSeverity[a.class] - envSeverity[b.class] })
	// Components that differ alike are named together.
	type group struct {
		what, why string
		who       []string
	}
	var groups []*group
	for _, pt := range parts {
		what, why := describe(pt.diff), fmt.Sprintf("[%s: %s]", pt.class, pt.reason)
		i := slices.IndexFunc(groups, func(g *group) bool { return g.what == what && g.why == why })
		if i < 0 {
			groups = append(groups, &group{what: what, why: why})
			i = len(groups) - 1
		}
		groups[i].who = append(groups[i].who, pt.envComponent.String())
	}
	var msg strings.Builder
	fmt.Fprintf(&msg, "env %s: ", name)
	for i, g := range groups {
		if i > 0 {
			msg.WriteString("; ")
		}
		fmt.Fprintf(&msg, "%s in %s %s", g.what, strings.Join(g.who, ", "), g.why)
	}
	fix := envFix(name, worst, parts, comps, chartValues, secretEnv)
	switch worst.class {
	case v1alpha1.FindingBlocks:
		fmt.Fprintf(&msg, ". Fix: %s (spec.preflight.acceptEnvChanges cannot accept it)", fix)
	case v1alpha1.FindingChanges:
		fmt.Fprintf(&msg, ". Fix: %s; or, if intended, add %s to spec.preflight.acceptEnvChanges", fix, name)
	default:
		fmt.Fprintf(&msg, ". Nothing to do; to change it: %s", fix)
	}
	return v1alpha1.Finding{Class: worst.class, Object: "Deployment/" + parts[0].old, Message: boundedMessage(msg.String())}
}

// envFix names what gives the new pods the old value: for a key the new pods read and that does
// not exist, the key to add; for a Secret-held variable, the chart's existingSecret settings if
// the chart passes it, else spec.release.secretEnv; for a plain one, the chart's setting or
// extraEnvVars. secretEnv is spec.release.secretEnv, which the render adds to every container.
func envFix(name string, p envPart, parts []envPart, comps []*envComponent, chartValues map[string]any, secretEnv []v1alpha1.SecretEnvVar) string {
	key, keyIsSecret := values.ChartKey(name, p.role)
	// The chart passes a Secret-held variable when its values have the key: 1.0.2 has none for
	// OTP_SECRET.
	_, chartPasses, _ := unstructured.NestedFieldNoCopy(chartValues, strings.Split(key, ".")...)
	chartPasses = chartPasses && keyIsSecret
	if n := p.diff.NewValue; n.Missing {
		kind, ref := "ConfigMap", n.FromConfigMap
		if n.FromSecret != nil {
			kind, ref = "Secret", n.FromSecret
		}
		fix := fmt.Sprintf("add key %s to %s %s", ref.Key, kind, ref.Name)
		if chartPasses {
			fix += ", or set " + key + " to a key it has"
		}
		return fix
	}
	// Configuration that sat in a Secret and has a plain chart setting (DB_HOST, S3_BUCKET) is
	// fixed in the values, not by passing the Secret on.
	if src := p.diff.OldValue.FromSecret; src != nil && (keyIsSecret || key == "") {
		var passedTo []string
		for _, c := range comps {
			if v, ok := c.newEnv[name]; ok && v.FromSecret != nil && !slices.Contains(passedTo, c.role) {
				passedTo = append(passedTo, c.role)
			}
		}
		entry := fmt.Sprintf("{name: %s, secretName: %s, key: %s}", name, src.Name, src.Key)
		group, _, _ := strings.Cut(key, ".existingSecretKeys.")
		switch {
		case chartPasses && (p.diff.Kind == envparity.KindChanged || len(passedTo) == 0):
			return fmt.Sprintf("set %s.existingSecret to %s and %s to %s", group, src.Name, key, src.Key)
		case p.diff.Kind == envparity.KindChanged:
			return "the chart does not pass it from a Secret: spec.release.secretEnv must give it as " + entry
		case len(passedTo) > 0:
			return fmt.Sprintf("the chart gives it to %s only: add %s to spec.release.secretEnv", strings.Join(passedTo, ", "), entry)
		default:
			return "the chart does not pass it from a Secret: add " + entry + " to spec.release.secretEnv"
		}
	}
	switch {
	case slices.ContainsFunc(secretEnv, func(v v1alpha1.SecretEnvVar) bool { return v.Name == name }):
		return "spec.release.secretEnv"
	case keyIsSecret && !chartPasses:
		return "spec.release.secretEnv"
	case key != "":
		return "set " + key
	case p.diff.Kind == envparity.KindAdded:
		return "the chart sets it itself; mastodon.extraEnvVars." + name + " overrides its value"
	case len(parts) == len(comps):
		return "set mastodon.extraEnvVars." + name
	}
	var keys []string
	for _, pt := range parts {
		if k := "mastodon." + pt.role + ".extraEnvVars." + name; !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return "set " + strings.Join(keys, " and ")
}

// boundedMessage keeps a finding's message within the API's 1024 bytes, cut on a character boundary.
func boundedMessage(msg string) string {
	const max = 1024
	if len(msg) <= max {
		return msg
	}
	return strings.ToValidUTF8(msg[:max-len("…")], "") + "…"
}

// describe says what a difference is: dropped old, added new, changed old → new.
func describe(d envparity.Difference) string {
	switch d.Kind {
	case envparity.KindMissing:
		return "dropped (was " + d.Old + ")"
	case envparity.KindAdded:
		return "added " + d.New
	default:
		return "changed " + d.Old + " → " + d.New
	}
}

// counterpart finds the release's Deployment of a source Deployment's component: web, streaming,
// and for Sidekiq the worker of the name values.Generate gave the Deployment, or the only worker.
func counterpart(rendered map[string]*appsv1.Deployment, role, worker string) *appsv1.Deployment {
	if role != "sidekiq" {
		return rendered[role]
	}
	if d := rendered[values.WorkerComponent(worker)]; worker != "" && d != nil {
		return d
	}
	var workers []string
	for c := range rendered {
		if strings.HasPrefix(c, values.WorkerComponent("")) {
			workers = append(workers, c)
		}
	}
	if len(workers) == 1 {
		return rendered[workers[0]]
	}
	return nil
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
