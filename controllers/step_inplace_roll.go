package controllers

import (
	"context"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/traffic"
)

// The components InPlace rolls, in the runbook's order: Sidekiq serves no traffic, so it goes
// first; web, the one users see most, last.
const (
	rollSidekiq   = "sidekiq"
	rollStreaming = string(traffic.Streaming)
	rollWeb       = string(traffic.Web)
)

// roll returns the step that hands one component over to the release.
func (r *MastodonMigrationReconciler) roll(component string) func(context.Context, *v1alpha1.MastodonMigration) (outcome, error) {
	return func(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
		return r.rollComponent(ctx, m, component)
	}
}

// oldStillServes ends the message of a roll step that timed out: nothing moved yet.
func oldStillServes(component string) func(*v1alpha1.MastodonMigration) string {
	return func(*v1alpha1.MastodonMigration) string {
		return "; the old " + component + " still serves: find out why (kubectl describe), or set spec.rollbackLevel to 1"
	}
}

// rollComponent hands one component over to the release, in an order that keeps it served:
// the release's Deployments of the component are scaled to their replicas from the values, and
// once they are rolled out and ready the component's traffic moves to them, and only then the
// old Deployments are scaled to 0. Each part looks at the world first, so a rerun after a
// restart picks up where the last one stopped. Scaling is a patch of spec.replicas rather than
// a helm upgrade: an upgrade would run the chart's pre-upgrade and post-upgrade migration Jobs
// for each component and add a release revision each time.
func (r *MastodonMigrationReconciler) rollComponent(ctx context.Context, m *v1alpha1.MastodonMigration, component string) (outcome, error) {
	release, err := r.releaseDeployments(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	news := componentDeployments(release, component)
	if len(news) == 0 {
		return outcome{state: v1alpha1.StepFailed, message: fmt.Sprintf(
			"release %s has no %s Deployment (label %s=%s): check that the chart renders it, then roll back at level 2 and start again",
			m.Spec.Release.Name, component, labelChartInstance, m.Spec.Release.Name)}, nil
	}
	want, err := r.releaseReplicas(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	var started, waiting []string
	for _, d := range news {
		n, ok := want[d.Spec.Template.Labels[labelChartPart]]
		if !ok {
			return outcome{state: v1alpha1.StepFailed, message: fmt.Sprintf(
				"Deployment %s is not in the chart rendered with the release's values: did spec.release change during the migration?", d.Name)}, nil
		}
		started = append(started, fmt.Sprintf("%s (%d)", d.Name, n))
		if current, message, err := r.scaleTo(ctx, d, n); err != nil {
			return outcome{}, err
		} else if !current {
			waiting = append(waiting, d.Name+": "+message)
		}
	}
	if len(waiting) > 0 {
		// The step's limit (releaseLimit) fails it when the pods take too long.
		return outcome{state: v1alpha1.StepRunning, message: "waiting for " + strings.Join(waiting, "; ")}, nil
	}
	msg := "started " + strings.Join(started, ", ")
	if component != rollSidekiq {
		moved, failed, err := r.moveComponentTraffic(ctx, m, traffic.Component(component))
		if err != nil || failed != "" {
			return outcome{state: v1alpha1.StepFailed, message: failed + "; the old " + component + " still serves"}, err
		}
		msg += fmt.Sprintf("; %s traffic moved (%s)", component, moved)
	}
	src, err := r.sourceStack(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	var stopped []string
	for _, d := range sourceOf(src, component) {
		stopped = append(stopped, d.Name)
		// An HPA of the old Deployment does not scale it back up: the autoscaler leaves a
		// Deployment at 0 alone. Finish re-points it at the release.
		if err := r.scaleToZero(ctx, d); err != nil {
			return outcome{}, err
		}
	}
	msg += "; old " + strings.Join(stopped, ", ") + " scaled to 0"
	return outcome{state: v1alpha1.StepSucceeded, message: msg}, nil
}

// componentDeployments are the release's Deployments of a component, by name: web, streaming,
// or every sidekiq-<worker>.
func componentDeployments(release map[string]*appsv1.Deployment, component string) []*appsv1.Deployment {
	var out []*appsv1.Deployment
	for c, d := range release {
		if c == component || component == rollSidekiq && strings.HasPrefix(c, rollSidekiq+"-") {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// sourceOf returns the old stack's Deployments of a component.
func sourceOf(src sourceStack, component string) []*appsv1.Deployment {
	switch component {
	case rollWeb:
		return []*appsv1.Deployment{src.web}
	case rollStreaming:
		return []*appsv1.Deployment{src.streaming}
	}
	return src.sidekiq
}

// releaseReplicas returns each component's replicas as the release renders them.
func (r *MastodonMigrationReconciler) releaseReplicas(ctx context.Context, m *v1alpha1.MastodonMigration) (map[string]int32, error) {
	manifests, err := r.renderRelease(ctx, m)
	if err != nil {
		return nil, err
	}
	return renderedReplicas(manifests)
}

// moveComponentTraffic moves one component's traffic to the release: the switch is planned for
// the whole stack against the snapshot, as ShiftTraffic plans it, and only the changes that
// carry this component's traffic are applied. They are added to status.traffic.changes, so a
// level 1 rollback undoes every component moved so far. It returns what moved, or why it cannot
// move (failed) when a person must act.
func (r *MastodonMigrationReconciler) moveComponentTraffic(ctx context.Context, m *v1alpha1.MastodonMigration, c traffic.Component) (moved, failed string, err error) {
	switcher, planned, failed, err := r.planSwitch(ctx, m)
	if err != nil || failed != "" {
		return "", failed, err
	}
	changes := componentChanges(planned, c)
	// Recorded before they are applied, so that a level 1 rollback also undoes an Apply that
	// stopped half-way; undoing a change not yet made finds the field as it was and skips it.
	if m.Status.Traffic == nil || m.Status.Traffic.Target != v1alpha1.TrafficToRelease {
		m.Status.Traffic = &v1alpha1.TrafficStatus{Target: v1alpha1.TrafficToRelease}
	}
	m.Status.Traffic.Method = v1alpha1.TrafficMethod(switcher.Method())
	recorded, added := appendChanges(m.Status.Traffic.Changes, recordChanges(changes))
	m.Status.Traffic.Changes = recorded
	if added > 0 || m.Status.Traffic.SwitchedAt == nil {
		// Observe counts its window from the last component that moved.
		now := metav1.Now()
		m.Status.Traffic.SwitchedAt = &now
	}
	if failed, err := r.applySwitch(ctx, m, changes); err != nil || failed != "" {
		return "", failed, err
	}
	objects := map[string]bool{}
	for _, ch := range changes {
		objects[ch.Object()] = true
	}
	names := make([]string, 0, len(objects))
	for o := range objects {
		names = append(names, o)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "nothing routes to it", "", nil
	}
	return fmt.Sprintf("%s by %s", strings.Join(names, ", "), switcher.Method()), "", nil
}

// componentChanges keeps the changes that carry one component's traffic.
func componentChanges(changes []traffic.Change, c traffic.Component) []traffic.Change {
	var out []traffic.Change
	for _, ch := range changes {
		if ch.Component == c {
			out = append(out, ch)
		}
	}
	return out
}

// appendChanges adds to recorded the changes of fields it does not hold yet, and says how many
// it added: a rerun of a roll step records nothing twice.
func appendChanges(recorded, changes []v1alpha1.TrafficChange) ([]v1alpha1.TrafficChange, int) {
	type key struct{ kind, name, path string }
	seen := map[key]bool{}
	for _, c := range recorded {
		seen[key{c.Kind, c.Name, c.Path}] = true
	}
	added := 0
	for _, c := range changes {
		if k := (key{c.Kind, c.Name, c.Path}); !seen[k] {
			seen[k] = true
			recorded = append(recorded, c)
			added++
		}
	}
	return recorded, added
}
