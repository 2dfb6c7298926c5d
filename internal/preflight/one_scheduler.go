package preflight

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/scheduler"
	"github.com/mastodon-operator/mastodon-operator/internal/values"
)

// oneScheduler counts the Sidekiq processes on the scheduler queue, where Mastodon wants exactly
// one (every scheduled job runs once per process):
//
//   - the old stack's: more than one is Informational. It is how the stack runs today, the
//     migration neither causes nor worsens it, and the finding says what the release will run;
//   - the release's, from the rendered values: more than one is Blocks, naming the values key
//     (the hand-over starts every consumer of the release at once). The chart refuses a worker
//     that lists `scheduler` with more than one replica, but not one without queues, which
//     Sidekiq runs on config/sidekiq.yml, scheduler included. Generated values set such a
//     worker to 1 replica themselves and say so in their notes;
//   - an HPA among spec.source.extraResources that scales an old worker: Finish re-points it at
//     the release's worker made of it (values.ReleaseWorker), never at one that consumes the
//     queue. When that leaves it on the old Deployment, a Changes finding says so.
func oneScheduler(ctx context.Context, in Input) ([]v1alpha1.Finding, error) {
	ns := in.Migration.Namespace
	var hpas autoscalingv2.HorizontalPodAutoscalerList
	if err := in.Client.List(ctx, &hpas, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var old []consumer
	var workers []*appsv1.Deployment
	for _, ref := range SourceDeployments(in.Migration) {
		if ref.Component != "sidekiq" {
			continue
		}
		d, err := sourceDeployment(ctx, in, ref.Name)
		if err != nil {
			return nil, err
		}
		if d == nil { // SourceDeployments' finding
			continue
		}
		workers = append(workers, d)
		if v := scheduler.Consumes(d.Spec.Template.Spec); v.Consumes {
			old = append(old, newConsumer(d, v, hpas.Items))
		}
	}
	var findings []v1alpha1.Finding
	p := in.release(ctx)
	release, releaseFindings, err := releaseConsumers(p)
	if err != nil {
		return nil, err
	}
	if n, upTo := processes(old); n > 1 || upTo > n {
		runs := "once"
		if n > 1 {
			runs = fmt.Sprintf("%d times", n)
		}
		if upTo > n {
			runs += fmt.Sprintf(" (up to %d times as its HPA scales it)", upTo)
		}
		f := finding("Deployment/"+old[0].deployment, "the old stack already runs %s: every scheduled job runs %s, "+
			"where Mastodon wants one process on the Sidekiq scheduler queue (%s); %s",
			counted(n, "scheduler", "schedulers"), runs, describeConsumers(old), releaseRuns(p.manifests != nil, release))
		f.Class = v1alpha1.FindingInformational
		findings = append(findings, f)
	}
	findings = append(findings, releaseFindings...)
	hpaFindings, err := unmovedHPAs(in.Migration, p, workers, hpas.Items)
	if err != nil {
		return nil, err
	}
	findings = append(findings, hpaFindings...)
	for i := range findings {
		if findings[i].Class == "" {
			findings[i].Class = v1alpha1.FindingBlocks
		}
	}
	return findings, nil
}

// unmovedHPAs are the Changes findings on the HPAs among spec.source.extraResources that scale an
// old Sidekiq Deployment and that Finish would leave on it, as the release rendered (p) has no
// worker to take its load but one that consumes the scheduler queue: an HPA there would run
// more than one scheduler. Generated values split such a worker, and the HPA moves to the half
// without scheduler. Nil when the release did not render (its own finding says why).
func unmovedHPAs(m *v1alpha1.MastodonMigration, p *releasePreview, workers []*appsv1.Deployment,
	hpas []autoscalingv2.HorizontalPodAutoscaler) ([]v1alpha1.Finding, error) {
	if p.manifests == nil {
		return nil, nil
	}
	release, err := p.manifests.Deployments()
	if err != nil {
		return nil, err
	}
	var findings []v1alpha1.Finding
	for _, x := range m.Spec.Source.ExtraResources {
		if x.Kind != "HorizontalPodAutoscaler" {
			continue
		}
		i := slices.IndexFunc(hpas, func(h autoscalingv2.HorizontalPodAutoscaler) bool { return h.Name == x.Name })
		if i < 0 {
			continue // extraResources' own finding
		}
		h := hpas[i]
		w := slices.IndexFunc(workers, func(d *appsv1.Deployment) bool {
			return h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == d.Name
		})
		if w < 0 {
			continue
		}
		names, err := values.WorkerNames(workers)
		if err != nil {
			return nil, err
		}
		if d, why := values.ReleaseWorker(workers, w, release); d == nil {
			f := finding("HorizontalPodAutoscaler/"+x.Name, "scales Deployment %s (%d to %d pods), but Finish will not re-point it at "+
				"the release: %s; it stays on the old Deployment, which it no longer scales at 0 replicas, and the release's workers "+
				"keep the replicas of the values: for the HPA to scale the release, give that Deployment's queues but scheduler a worker "+
				"named %s in spec.release.values (mastodon.sidekiq.workers), or leave the HPA out of spec.source.extraResources to keep it so", workers[w].Name, ptr.Deref(h.Spec.MinReplicas, 1), h.Spec.MaxReplicas, why, names[w])
			f.Class = v1alpha1.FindingChanges
			findings = append(findings, f)
		}
	}
	return findings, nil
}

// consumer is a Deployment whose pods consume the scheduler queue, with how many it runs.
type consumer struct {
	deployment string
	why        string
	// pods is what it runs now at least: its replicas, or an HPA's minReplicas; upTo is what
	// an HPA may scale it to.
	pods, upTo int32
	hpa        *autoscalingv2.HorizontalPodAutoscaler
	// key is the values key of its replicas, for the release's.
	key string
}

func newConsumer(d *appsv1.Deployment, v scheduler.Verdict, hpas []autoscalingv2.HorizontalPodAutoscaler) consumer {
	c := consumer{deployment: d.Name, why: v.Why, pods: ptr.Deref(d.Spec.Replicas, 1)}
	c.upTo = c.pods
	for i := range hpas {
		h := &hpas[i]
		if t := h.Spec.ScaleTargetRef; t.Kind == "Deployment" && t.Name == d.Name {
			c.hpa = h
			c.pods = max(c.pods, ptr.Deref(h.Spec.MinReplicas, 1))
			c.upTo = max(c.pods, h.Spec.MaxReplicas)
		}
	}
	return c
}

// releaseConsumers are the release's scheduler consumers as rendered with its values, and the
// Blocks findings when they would run more than one process. Nil when nothing was rendered.
func releaseConsumers(p *releasePreview) ([]consumer, []v1alpha1.Finding, error) {
	if p.manifests == nil {
		return nil, nil, nil
	}
	deployments, err := p.manifests.Deployments()
	if err != nil {
		return nil, nil, err
	}
	var out []consumer
	for _, component := range slices.Sorted(maps.Keys(deployments)) {
		worker, ok := strings.CutPrefix(component, "sidekiq-")
		if !ok {
			continue
		}
		d := deployments[component]
		if v := scheduler.Consumes(d.Spec.Template.Spec); v.Consumes {
			c := newConsumer(d, v, nil)
			c.key = workerKey(p, worker)
			out = append(out, c)
		}
	}
	n, _ := processes(out)
	if n <= 1 {
		return out, nil, nil
	}
	var findings []v1alpha1.Finding
	if len(out) > 1 {
		var keys []string
		for _, c := range out {
			keys = append(keys, strings.TrimSuffix(c.key, ".replicas")+".queues")
		}
		findings = append(findings, finding("Deployment/"+out[0].deployment,
			"%d workers of the release consume the Sidekiq scheduler queue (%s): they would run %d schedulers, and every "+
				"scheduled job %d times; keep scheduler in the queues of one worker with 1 replica (%s in spec.release.values; "+
				"a worker without queues reads config/sidekiq.yml, which lists scheduler)", len(out), describeConsumers(out), n, n, strings.Join(keys, ", ")))
		return out, findings, nil
	}
	c := out[0]
	findings = append(findings, finding("Deployment/"+c.deployment,
		"the release's values run %d pods on the Sidekiq scheduler queue (%s): every scheduled job would run %d times; set %s "+
			"to 1 in spec.release.values, and give the worker's other queues a worker of their own to scale them", c.pods, c.why, c.pods, c.key))
	return out, findings, nil
}

// workerKey is the values key of a chart worker's replicas, mastodon.sidekiq.workers[i].replicas,
// found in the values the release renders with, or else in the chart's defaults.
func workerKey(p *releasePreview, worker string) string {
	for _, vals := range []map[string]any{p.values, p.chart.Values} {
		mastodon, _ := vals["mastodon"].(map[string]any)
		sidekiq, _ := mastodon["sidekiq"].(map[string]any)
		workers, _ := sidekiq["workers"].([]any)
		for i, w := range workers {
			if entry, _ := w.(map[string]any); entry["name"] == worker {
				return fmt.Sprintf("mastodon.sidekiq.workers[%d].replicas", i)
			}
		}
	}
	return "mastodon.sidekiq.workers[].replicas of worker " + worker
}

// processes sums what the consumers run now, and what their HPAs may scale them to.
func processes(cs []consumer) (n, upTo int32) {
	for _, c := range cs {
		n += c.pods
		upTo += c.upTo
	}
	return n, upTo
}

// describeConsumers lists the consumers for a message: "Deployment mastodon-worker: 3 pods (sidekiq
// without -q reads Mastodon's config/sidekiq.yml, which lists scheduler)".
func describeConsumers(cs []consumer) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		pods := counted(c.pods, "pod", "pods")
		if c.hpa != nil {
			pods += fmt.Sprintf(" (HorizontalPodAutoscaler %s: %d to %d)", c.hpa.Name, ptr.Deref(c.hpa.Spec.MinReplicas, 1), c.hpa.Spec.MaxReplicas)
		}
		parts[i] = fmt.Sprintf("Deployment %s: %s, %s", c.deployment, pods, c.why)
	}
	return strings.Join(parts, "; ")
}

// releaseRuns says what the release will run on the queue, for the old stack's finding.
func releaseRuns(rendered bool, release []consumer) string {
	switch n, _ := processes(release); {
	case !rendered:
		return "the release is checked once its values render"
	case n == 1:
		return fmt.Sprintf("the release runs 1 (Deployment %s, 1 replica: %s), started once the old ones' pods are gone",
			release[0].deployment, release[0].key)
	case n == 0:
		return "the release runs none: scheduled jobs would stop after the switch"
	default:
		return fmt.Sprintf("the release would run %d: see the Blocks finding on it", n)
	}
}

// counted is n with the word for one or for many.
func counted(n int32, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
