package controllers

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/chart"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
	"github.com/mastodon-operator/mastodon-operator/internal/scheduler"
	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
)

// Sidekiq's scheduler queue may have one consumer only. The release is installed with its
// scheduler-consuming workers at 0 replicas; HandOverScheduler stops the old consumer, waits
// until its pods are gone, and only then starts the release's. A rollback hands it back the
// same way before the old stack comes back.

// StepHandOverScheduler and StepRollbackScheduler are the hand-overs of the scheduler queue.
const (
	StepHandOverScheduler = "HandOverScheduler"
	StepRollbackScheduler = "RollbackHandBackScheduler"
)

// podsGonePoll is how often a hand-over looks for the old consumer's pods: their last delete
// changes no Deployment, so no watch wakes the step. A list of one Deployment's pods is cheap,
// and a level 1 waits on it (at 500 ms it was half of a level 1's time, make bench).
const podsGonePoll = 150 * time.Millisecond

// schedulerConsumers keeps the Deployments whose pods consume the scheduler queue.
func schedulerConsumers(ds []*appsv1.Deployment) []*appsv1.Deployment {
	var out []*appsv1.Deployment
	for _, d := range ds {
		if scheduler.Consumes(d.Spec.Template.Spec).Consumes {
			out = append(out, d)
		}
	}
	return out
}

// schedulerWorkers are the chart's Sidekiq workers (by name) that consume the scheduler queue,
// as the chart renders them with vals.
func schedulerWorkers(chrt *chart.Chart, vals map[string]any, m *v1alpha1.MastodonMigration) (map[string]bool, error) {
	manifests, err := helm.Render(chrt, vals, m.Spec.Release.Name, m.Namespace)
	if err != nil {
		return nil, err
	}
	deployments, err := manifests.Deployments()
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for component, d := range deployments {
		if worker, ok := strings.CutPrefix(component, rollSidekiq+"-"); ok && scheduler.Consumes(d.Spec.Template.Spec).Consumes {
			out[worker] = true
		}
	}
	return out, nil
}

// handOverScheduler hands the scheduler queue from the old stack's consumers to the release's.
func (r *MastodonMigrationReconciler) handOverScheduler(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	src, err := r.sourceStack(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	release, err := r.releaseDeployments(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	want, err := r.releaseReplicas(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	replicas := func(d *appsv1.Deployment) *int32 { return ptr.To(want[d.Spec.Template.Labels[labelChartPart]]) }
	from := schedulerConsumers(src.sidekiq)
	if waiting, err := r.startSplitWorkers(ctx, m, src, release, from, replicas); err != nil || waiting != "" {
		return outcome{state: v1alpha1.StepRunning, message: waiting}, err
	}
	return r.moveScheduler(ctx, m, from, schedulerConsumers(componentDeployments(release, rollSidekiq)), replicas)
}

// startSplitWorkers starts, and waits for, the release worker made of each old scheduler
// consumer when it is not a consumer itself (generated values split the scheduler queue off a
// worker of more than one pod): it takes the old worker's other queues before the old worker
// stops, so none waits for a worker during the hand-over. InPlace installs it at 0 replicas; the
// other strategies run it already. It returns what it waits for, or "".
func (r *MastodonMigrationReconciler) startSplitWorkers(ctx context.Context, m *v1alpha1.MastodonMigration, src sourceStack,
	release map[string]*appsv1.Deployment, consumers []*appsv1.Deployment, replicas func(*appsv1.Deployment) *int32) (string, error) {
	made, _ := releaseWorkers(m, src, release)
	var waiting []string
	for _, old := range consumers {
		d := made[old.Name]
		if d == nil {
			continue
		}
		// Up to its replicas, never down: it may run more already.
		n := max(ptr.Deref(d.Spec.Replicas, 1), ptr.Deref(replicas(d), 1))
		if current, message, err := r.scaleTo(ctx, d, n); err != nil {
			return "", err
		} else if !current {
			waiting = append(waiting, fmt.Sprintf("%s, which takes the queues of %s besides scheduler: %s", d.Name, old.Name, message))
		}
	}
	if len(waiting) == 0 {
		return "", nil
	}
	return "starting " + strings.Join(waiting, "; ") + "; then the scheduler moves", nil
}

// handBackScheduler hands the scheduler queue from the release's consumers back to the old
// stack's, at their snapshot replicas, once the traffic is back (RollbackSource leaves them).
func (r *MastodonMigrationReconciler) handBackScheduler(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	src, err := r.sourceStack(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	release, err := r.releaseDeployments(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	stored, err := r.snapshotReplicas(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	return r.moveScheduler(ctx, m, schedulerConsumers(componentDeployments(release, rollSidekiq)), schedulerConsumers(src.sidekiq),
		func(d *appsv1.Deployment) *int32 { return stored[d.Name] })
}

// snapshotReplicas are the old Deployments' replicas before the migration, by their live name.
func (r *MastodonMigrationReconciler) snapshotReplicas(ctx context.Context, m *v1alpha1.MastodonMigration) (map[string]*int32, error) {
	objects, err := snapshot.Load(ctx, r.Client, m.Namespace, snapshotName(m))
	if err != nil {
		return nil, err
	}
	out := map[string]*int32{}
	for _, u := range objects {
		if u.GetKind() != "Deployment" {
			continue
		}
		var d appsv1.Deployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
			return nil, err
		}
		out[setAsideAs(m, d.Name)] = d.Spec.Replicas
	}
	return out, nil
}

// moveScheduler stops the consumers from, waits until their pods are gone, then scales the
// consumers to to their replicas and waits until they are ready, recording both moments in
// status.scheduler. Each part looks at the world first, so a rerun after a restart goes on where
// the last stopped; to is never scaled up while a pod of from exists.
func (r *MastodonMigrationReconciler) moveScheduler(ctx context.Context, m *v1alpha1.MastodonMigration,
	from, to []*appsv1.Deployment, replicas func(*appsv1.Deployment) *int32) (outcome, error) {
	fromNames, toNames := deploymentNames(from), deploymentNames(to)
	if len(from) == 0 && len(to) == 0 {
		return outcome{state: v1alpha1.StepSkipped, message: "no Deployment of either stack consumes the Sidekiq scheduler queue"}, nil
	}
	if m.Status.Scheduler == nil {
		m.Status.Scheduler = &v1alpha1.SchedulerStatus{Holder: fromNames}
	}
	st := m.Status.Scheduler
	// to may hold it already: a rollback before the hand-over to the release. Then nothing is
	// handed over, and the step only makes sure that from stays stopped.
	var h *v1alpha1.SchedulerHandOver
	if st.Holder != toNames || pendingHandOver(st) {
		h = openHandOver(st, fromNames, toNames)
	}
	for _, d := range from {
		if err := r.scaleToZero(ctx, d); err != nil {
			return outcome{}, err
		}
	}
	left, err := r.podsLeft(ctx, m.Namespace, selectorsOf(from))
	if err != nil {
		return outcome{}, err
	}
	if len(left) > 0 {
		return outcome{state: v1alpha1.StepRunning, requeueAfter: podsGonePoll,
			message: fmt.Sprintf("waiting for %s of the scheduler consumer %s to stop before %s starts: %s",
				counted(int32(len(left)), "pod", "pods"), fromNames, noneIfEmpty(toNames), podNames(left))}, nil
	}
	if h != nil && h.OldStoppedAt == nil {
		now := metav1.NowMicro()
		h.OldStoppedAt, st.Holder, st.Since = &now, "", nil
	}
	var waiting []string
	for _, d := range to {
		// A Deployment without replicas has 1, as the API server defaults it.
		if current, message, err := r.scaleTo(ctx, d, ptr.Deref(replicas(d), 1)); err != nil {
			return outcome{}, err
		} else if !current {
			waiting = append(waiting, d.Name+": "+message)
		}
	}
	if len(waiting) > 0 {
		return outcome{state: v1alpha1.StepRunning, message: fmt.Sprintf("the scheduler consumer %s is stopped; waiting for %s",
			noneIfEmpty(fromNames), strings.Join(waiting, "; "))}, nil
	}
	if h == nil {
		return outcome{state: v1alpha1.StepSucceeded, message: fmt.Sprintf("%s kept the Sidekiq scheduler queue; %s stopped%s",
			toNames, noneIfEmpty(fromNames), crowded(to))}, nil
	}
	if h.NewStartedAt == nil {
		now := metav1.NowMicro()
		h.NewStartedAt, st.Holder, st.Since = &now, toNames, &now
	}
	return outcome{state: v1alpha1.StepSucceeded, message: fmt.Sprintf("Sidekiq scheduler queue handed over from %s to %s: old stopped %s, new ready %s (%s later)%s",
		noneIfEmpty(fromNames), noneIfEmpty(toNames), clock(h.OldStoppedAt), clock(h.NewStartedAt),
		h.NewStartedAt.Sub(h.OldStoppedAt.Time).Round(time.Millisecond), crowded(to))}, nil
}

// crowded notes the consumers that run more than one pod: each pod is a scheduler process, and
// Mastodon wants one. The operator keeps the replicas it was given (the old stack's, or the
// values'), as changing them is the owner's call.
func crowded(consumers []*appsv1.Deployment) string {
	var notes []string
	for _, d := range consumers {
		if n := ptr.Deref(d.Spec.Replicas, 1); n > 1 {
			notes = append(notes, fmt.Sprintf("%s runs %d", d.Name, n))
		}
	}
	if len(notes) == 0 {
		return ""
	}
	return "; note: " + strings.Join(notes, ", ") + " pods on the scheduler queue, where Mastodon wants one process: give the scheduler a worker of its own with 1 replica"
}

// pendingHandOver reports whether the last hand-over has not ended.
func pendingHandOver(st *v1alpha1.SchedulerStatus) bool {
	n := len(st.HandOvers)
	return n > 0 && st.HandOvers[n-1].NewStartedAt == nil
}

// openHandOver returns the hand-over from -> to under way, or records a new one; status keeps
// the last few.
func openHandOver(st *v1alpha1.SchedulerStatus, from, to string) *v1alpha1.SchedulerHandOver {
	if n := len(st.HandOvers); n > 0 && pendingHandOver(st) {
		if last := &st.HandOvers[n-1]; last.From == from && last.To == to {
			return last
		}
	}
	const keep = 4 // the API's MaxItems
	st.HandOvers = append(st.HandOvers, v1alpha1.SchedulerHandOver{From: from, To: to})
	if len(st.HandOvers) > keep {
		st.HandOvers = slices.Delete(st.HandOvers, 0, len(st.HandOvers)-keep)
	}
	return &st.HandOvers[len(st.HandOvers)-1]
}

// podSelector is what picks the pods of a Deployment or a Job, named for errors.
type podSelector struct {
	owner    string
	selector *metav1.LabelSelector
}

// selectorsOf are the pod selectors of Deployments.
func selectorsOf(ds []*appsv1.Deployment) []podSelector {
	out := make([]podSelector, len(ds))
	for i, d := range ds {
		out[i] = podSelector{owner: "Deployment " + d.Name, selector: d.Spec.Selector}
	}
	return out
}

// podsLeft lists the pods any of the selectors pick that exist on the API server, Terminating
// ones included: a pod that is going still runs for its grace period (a Sidekiq drains its
// jobs, a Puma its requests), and may write. One list of the namespace, read from the API
// server: the operator caches no pods, and a pod's last delete changes no object it watches.
func (r *MastodonMigrationReconciler) podsLeft(ctx context.Context, namespace string, of []podSelector) ([]corev1.Pod, error) {
	if len(of) == 0 {
		return nil, nil
	}
	selectors := make([]labels.Selector, len(of))
	for i, s := range of {
		sel, err := metav1.LabelSelectorAsSelector(s.selector)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.owner, err)
		}
		selectors[i] = sel
	}
	var pods corev1.PodList
	if err := r.APIReader.List(ctx, &pods, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing the pods of namespace %s: %w", namespace, err)
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if slices.ContainsFunc(selectors, func(s labels.Selector) bool { return !s.Empty() && s.Matches(labels.Set(p.Labels)) }) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// listedPods is how many pods a message names before it counts the rest.
const listedPods = 5

// podNames names pods for a message with what they are doing, the first listedPods of them:
// "mastodon-worker-5d8f-x2x9q (Terminating), mastodon-web-7c9b-k4m2p (Running) and 3 more".
func podNames(pods []corev1.Pod) string {
	var names []string
	for _, p := range pods[:min(len(pods), listedPods)] {
		state := string(p.Status.Phase)
		if p.DeletionTimestamp != nil {
			state = "Terminating"
		}
		names = append(names, fmt.Sprintf("%s (%s)", p.Name, cmp.Or(state, "Pending")))
	}
	out := strings.Join(names, ", ")
	if n := len(pods) - len(names); n > 0 {
		out += fmt.Sprintf(" and %d more", n)
	}
	return out
}

func deploymentNames(ds []*appsv1.Deployment) string {
	names := make([]string, len(ds))
	for i, d := range ds {
		names[i] = d.Name
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

func noneIfEmpty(names string) string {
	if names == "" {
		return "no Deployment"
	}
	return names
}

func clock(t *metav1.MicroTime) string { return t.UTC().Format("15:04:05.000") }
