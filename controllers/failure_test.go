package controllers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
)

// resumeFrom creates m paused, writes the status the operator would have written up to some
// step (steps, with what else seed sets), then lets the operator carry on from there with the
// spec changes of resume.
func resumeFrom(t *testing.T, ctx context.Context, m *v1alpha1.MastodonMigration, seed func(*v1alpha1.MastodonMigration),
	resume func(*v1alpha1.MastodonMigration)) {
	t.Helper()
	m.Spec.Paused = true
	if err := k8sClient.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	// The operator's first write (paused) comes before the seed, so it cannot overwrite it.
	eventually(t, get(ctx, m)).Should(gomega.HaveField("Status.ObservedGeneration", m.Generation))
	latest, _ := get(ctx, m)()
	seeded := latest.DeepCopy()
	seed(seeded)
	if err := k8sClient.Status().Patch(ctx, seeded, client.MergeFrom(latest)); err != nil {
		t.Fatal(err)
	}
	resumed := seeded.DeepCopy()
	resumed.Spec.Paused = false
	resume(resumed)
	if err := k8sClient.Patch(ctx, resumed, client.MergeFrom(seeded)); err != nil {
		t.Fatal(err)
	}
}

// succeeded records steps as succeeded at generation 1, as a migration that ran them has them.
func succeeded(names ...string) []v1alpha1.StepStatus {
	at := metav1.NewMicroTime(time.Now().Add(-time.Hour))
	var out []v1alpha1.StepStatus
	for _, n := range names {
		out = append(out, v1alpha1.StepStatus{Name: n, State: v1alpha1.StepSucceeded, Generation: 1, StartedAt: &at, FinishedAt: &at})
	}
	return out
}

// releaseDeployment is a Deployment of the release, as the chart labels it; envtest runs no
// controller, so it is not rolled out until setRolledOut says so.
func releaseDeployment(ns, component string) *appsv1.Deployment {
	d := deployment(ns, "mastodon-helm-"+component)
	d.Labels = map[string]string{"app.kubernetes.io/instance": "mastodon-helm"}
	d.Spec.Selector.MatchLabels[helm.LabelComponent] = component
	d.Spec.Template.Labels[helm.LabelComponent] = component
	return d
}

// setRolledOut writes the status the Deployment controller writes once every pod is ready.
// The operator may be scaling it meanwhile: a conflict reads it again.
func setRolledOut(t *testing.T, ctx context.Context, d *appsv1.Deployment) {
	t.Helper()
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(d), d); err != nil {
			return err
		}
		n := *d.Spec.Replicas
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n,
			AvailableReplicas: n, Conditions: []appsv1.DeploymentCondition{
				{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"},
				{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable"}}}
		return k8sClient.Status().Update(ctx, d)
	}); err != nil {
		t.Fatal(err)
	}
}

func createAll(t *testing.T, ctx context.Context, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := k8sClient.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
}

// stopped is a migration that stopped for a person: phase Failed, Stalled with the step's
// reason and a message that says how to roll back.
func stopped(step string, says ...string) gomega.OmegaMatcher {
	matchers := []gomega.OmegaMatcher{gomega.ContainSubstring(`"rollbackLevel":1`)}
	for _, s := range says {
		matchers = append(matchers, gomega.ContainSubstring(s))
	}
	return gomega.And(
		gomega.HaveField("Status.Phase", v1alpha1.PhaseFailed),
		gomega.WithTransform(func(m *v1alpha1.MastodonMigration) string { return string(conditionStatus(m, "Stalled")) }, gomega.Equal("True")),
		gomega.WithTransform(func(m *v1alpha1.MastodonMigration) string {
			return string(conditionStatus(m, "Reconciling") + "/" + conditionStatus(m, "Ready"))
		}, gomega.Equal("False/False")),
		gomega.WithTransform(func(m *v1alpha1.MastodonMigration) v1alpha1.StepState { return stepOf(m, step).State }, gomega.Equal(v1alpha1.StepFailed)),
		gomega.WithTransform(func(m *v1alpha1.MastodonMigration) string { return stepOf(m, step).Message }, gomega.And(matchers...)),
	)
}

// A Verify that timed out stops the migration for good (for this generation): the release's pods
// turning ready afterwards does not move the traffic to it.
func TestAVerifyThatTimedOutStaysFailedWhenThePodsTurnReadyLater(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	web, streaming := releaseDeployment(ns, "web"), releaseDeployment(ns, "streaming")
	createAll(t, ctx, web, streaming)
	m := migration(ns, "to-helm")
	resumeFrom(t, ctx, m, func(m *v1alpha1.MastodonMigration) {
		// Verify has run for longer than the release timeout (10m by default).
		started := metav1.NewMicroTime(time.Now().Add(-11 * time.Minute))
		m.Status.Steps = append(succeeded("Preflight", "GenerateValues", "Snapshot", "DatabaseBackup", "Install"),
			v1alpha1.StepStatus{Name: "Verify", State: v1alpha1.StepRunning, Generation: 1, StartedAt: &started})
	}, func(*v1alpha1.MastodonMigration) {})

	eventually(t, get(ctx, m)).Should(stopped("Verify", "not ready within 10m0s", "raise spec.release.timeout"))
	eventually(t, eventsFor(ctx, "MastodonMigration", m)).Should(gomega.ContainElement(gomega.And(
		gomega.HaveField("Type", corev1.EventTypeWarning), gomega.HaveField("Reason", "VerifyFailed"))))

	// The pods turn ready; the watch of the release's Deployments wakes the migration.
	setRolledOut(t, ctx, web)
	setRolledOut(t, ctx, streaming)
	gomega.NewWithT(t).Consistently(get(ctx, m)).WithTimeout(3 * time.Second).WithPolling(200 * time.Millisecond).Should(gomega.And(
		stopped("Verify", "not ready within 10m0s"),
		gomega.WithTransform(func(m *v1alpha1.MastodonMigration) v1alpha1.StepState { return stepOf(m, "Baseline").State },
			gomega.Or(gomega.BeEmpty(), gomega.Equal(v1alpha1.StepPending))),
	))
}

// With spec.rollback.automatic false, an Observe that told on-call to roll back holds until a
// person acts: the new stack passing later does not finish the migration, which would stop the
// old stack.
func TestAnObserveThatAskedForARollbackHoldsWithoutAutomaticRollback(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	web, streaming := releaseDeployment(ns, "web"), releaseDeployment(ns, "streaming")
	createAll(t, ctx, web, streaming)
	m := migration(ns, "to-helm")
	m.Spec.Rollback.Automatic = ptr.To(false)
	m.Spec.Analysis.Interval = &metav1.Duration{Duration: 5 * time.Second}
	m.Spec.Analysis.Window = &metav1.Duration{Duration: 5 * time.Second}
	resumeFrom(t, ctx, m, func(m *v1alpha1.MastodonMigration) {
		started := metav1.NewMicroTime(time.Now().Add(-10 * time.Second))
		m.Status.Steps = append(succeeded("Preflight", "GenerateValues", "Snapshot", "DatabaseBackup", "Install", "Verify",
			"Baseline", "HandOverScheduler", "ShiftTraffic"), v1alpha1.StepStatus{Name: "Observe", State: v1alpha1.StepRunning, Generation: 1, StartedAt: &started})
		switched := metav1.NewTime(started.Time)
		m.Status.Traffic = &v1alpha1.TrafficStatus{Target: v1alpha1.TrafficToRelease, Method: v1alpha1.TrafficMethod("ServiceSelector"), SwitchedAt: &switched}
	}, func(*v1alpha1.MastodonMigration) {})

	// The new stack is not ready for an interval: a breach that calls for a rollback.
	eventually(t, get(ctx, m)).Should(stopped("Observe", "the new stack is not ready", "spec.rollback.automatic is false"))
	got, _ := get(ctx, m)()
	gomega.NewWithT(t).Expect(got.Status.Rollback).To(gomega.BeNil(), "no rollback started by itself")

	// The new stack recovers and the window is over: without the hold, the next look would pass
	// and Finish would scale the old stack to 0.
	setRolledOut(t, ctx, web)
	setRolledOut(t, ctx, streaming)
	gomega.NewWithT(t).Consistently(get(ctx, m)).WithTimeout(8 * time.Second).WithPolling(200 * time.Millisecond).Should(gomega.And(
		stopped("Observe", "the new stack is not ready"),
		gomega.WithTransform(func(m *v1alpha1.MastodonMigration) v1alpha1.StepState { return stepOf(m, "Finish").State },
			gomega.Or(gomega.BeEmpty(), gomega.Equal(v1alpha1.StepPending))),
	))
}

// A rollback waits for the old pods as long as spec.rollback.sourceReadyTimeout says, not the
// runbook's fixed 60s.
func TestARollbackWaitsForTheOldPodsAsLongAsTheSpecSays(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	// Never ready: envtest runs no Deployment controller.
	createAll(t, ctx, deployment(ns, "mastodon-web"), deployment(ns, "mastodon-streaming"), deployment(ns, "mastodon-worker"))
	m := migration(ns, "to-helm")
	m.Spec.Rollback.SourceReadyTimeout = &metav1.Duration{Duration: 2 * time.Second}
	resumeFrom(t, ctx, m, func(m *v1alpha1.MastodonMigration) {
		var refs []snapshot.Ref
		for _, n := range []string{"mastodon-web", "mastodon-streaming", "mastodon-worker"} {
			refs = append(refs, snapshot.Ref{APIVersion: "apps/v1", Kind: "Deployment", Name: n})
		}
		if _, err := snapshot.Take(ctx, k8sClient, ns, m.Name+"-snapshot-"+string(m.UID)[:8], nil, refs); err != nil {
			t.Fatal(err)
		}
		m.Status.Steps = succeeded("Preflight", "GenerateValues", "Snapshot", "DatabaseBackup", "Install")
	}, func(m *v1alpha1.MastodonMigration) { m.Spec.RollbackLevel = 1 })

	start := time.Now()
	eventually(t, get(ctx, m)).Should(gomega.WithTransform(func(m *v1alpha1.MastodonMigration) v1alpha1.StepStatus {
		return stepOf(m, "RollbackSource")
	}, gomega.And(gomega.HaveField("State", v1alpha1.StepFailed),
		gomega.HaveField("Message", gomega.HavePrefix("not ready within 2s (spec.rollback.sourceReadyTimeout): waiting for the old pods: ")))))
	if waited := time.Since(start); waited > 20*time.Second {
		t.Errorf("the rollback gave up on the old pods after %s, want about 2s", waited)
	}
}

// A corrupted record of the traffic switch in status fails the level 1 rollback with an error
// in status and an Event, never a panic of the operator.
func TestACorruptedTrafficRecordFailsTheRollbackInStatus(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mastodon-web"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app.kubernetes.io/instance": "mastodon-helm"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	createAll(t, ctx, svc)
	m := migration(ns, "to-helm")
	resumeFrom(t, ctx, m, func(m *v1alpha1.MastodonMigration) {
		m.Status.Steps = succeeded("Preflight", "GenerateValues", "Snapshot", "DatabaseBackup", "Install", "Verify",
			"Baseline", "HandOverScheduler", "ShiftTraffic", "RollbackSource")
		now := metav1.Now()
		m.Status.Traffic = &v1alpha1.TrafficStatus{Target: v1alpha1.TrafficToRelease, Method: v1alpha1.TrafficMethod("ServiceSelector"),
			SwitchedAt: &now, Changes: []v1alpha1.TrafficChange{{Kind: "Service", Name: "mastodon-web", Path: "/spec/selector",
				Component: "web", Before: `{"app":"mastodon-web"}`, After: `{"app.kubernetes.io/instance":"mastodon-he`}}}
	}, func(m *v1alpha1.MastodonMigration) { m.Spec.RollbackLevel = 1 })

	const corrupted = "moving the traffic back: the recorded change of Service/mastodon-web /spec/selector is corrupted"
	eventually(t, get(ctx, m)).Should(gomega.And(
		gomega.WithTransform(func(m *v1alpha1.MastodonMigration) string { return stepOf(m, "RollbackTraffic").Message },
			gomega.HavePrefix(corrupted)),
		// What kubectl describe shows first: the conditions say it too.
		gomega.WithTransform(func(m *v1alpha1.MastodonMigration) *metav1.Condition {
			return meta.FindStatusCondition(m.Status.Conditions, "Ready")
		}, gomega.And(gomega.HaveField("Reason", "RollbackTrafficFailed"), gomega.HaveField("Message", gomega.HavePrefix(corrupted)))),
	))
	eventually(t, eventsFor(ctx, "MastodonMigration", m)).Should(gomega.ContainElement(gomega.And(
		gomega.HaveField("Type", corev1.EventTypeWarning), gomega.HaveField("Reason", "RollbackTrafficFailed"),
		gomega.HaveField("Note", gomega.HavePrefix(corrupted)))))
	// The Service is left as it was.
	got := &corev1.Service{}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(svc), got); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got.Spec.Selector["app.kubernetes.io/instance"], "mastodon-helm") {
		t.Errorf("Service selects %v, want it untouched", got.Spec.Selector)
	}
}
