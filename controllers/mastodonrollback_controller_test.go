package controllers_test

import (
	"context"
	"testing"
	"time"

	"github.com/onsi/gomega"
	sqladmin "google.golang.org/api/sqladmin/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
)

func getRollback(ctx context.Context, rb *v1alpha1.MastodonRollback) func() (*v1alpha1.MastodonRollback, error) {
	return func() (*v1alpha1.MastodonRollback, error) {
		got := &v1alpha1.MastodonRollback{}
		err := k8sClient.Get(ctx, client.ObjectKeyFromObject(rb), got)
		return got, err
	}
}

func rollback(ns, name, migration string, level int32) *v1alpha1.MastodonRollback {
	return &v1alpha1.MastodonRollback{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.MastodonRollbackSpec{MigrationRef: v1alpha1.LocalObjectReference{Name: migration},
			Level: level, Reason: "5xx over 50%"},
	}
}

func TestRollbackOfAMissingMigrationIsRefused(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	rb := rollback(ns, "oops", "no-such-migration", 1)
	if err := k8sClient.Create(ctx, rb); err != nil {
		t.Fatal(err)
	}
	eventually(t, getRollback(ctx, rb)).Should(gomega.And(
		gomega.HaveField("Status.Phase", v1alpha1.RollbackFailed),
		gomega.HaveField("Status.Conditions", gomega.ContainElement(gomega.And(
			gomega.HaveField("Type", "Stalled"), gomega.HaveField("Reason", "MigrationNotFound"),
			gomega.HaveField("Message", "MastodonMigration no-such-migration not found in namespace "+ns+": check spec.migrationRef.name"),
		))),
	))
	eventually(t, eventsFor(ctx, "MastodonRollback", rb)).Should(gomega.ContainElement(
		gomega.HaveField("Reason", "MigrationNotFound")))
}

func TestLevel3RollbackNeedsADatabaseBackupConfigured(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	m := migration(ns, "to-helm")
	if err := k8sClient.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	rb := rollback(ns, "restore-db", "to-helm", 3)
	rb.Spec.ConfirmDataLoss = true
	if err := k8sClient.Create(ctx, rb); err != nil {
		t.Fatal(err)
	}
	eventually(t, getRollback(ctx, rb)).Should(gomega.And(
		gomega.HaveField("Status.Phase", v1alpha1.RollbackFailed),
		gomega.HaveField("Status.Conditions", gomega.ContainElement(gomega.HaveField("Reason", "DatabaseBackupNotConfigured"))),
	))
	got, _ := get(ctx, m)()
	gomega.NewWithT(t).Expect(got.Status.Rollback).To(gomega.BeNil(), "a refused rollback must not touch the migration")
}

func TestRollbackOfAMigrationThatChangedNothingSucceedsAndStopsIt(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	m := migration(ns, "to-helm")
	if err := k8sClient.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	rb := rollback(ns, "back", "to-helm", 2)
	if err := k8sClient.Create(ctx, rb); err != nil {
		t.Fatal(err)
	}
	eventually(t, getRollback(ctx, rb)).Should(gomega.And(
		gomega.HaveField("Status.Phase", v1alpha1.RollbackSucceeded),
		gomega.HaveField("Status.ObservedGeneration", int64(1)),
		gomega.HaveField("Status.Steps", gomega.ContainElement(gomega.And(
			gomega.HaveField("Name", "Resolve"), gomega.HaveField("State", v1alpha1.StepSucceeded),
		))),
		gomega.HaveField("Status.Conditions", gomega.ContainElement(gomega.And(
			gomega.HaveField("Type", "Ready"), gomega.HaveField("Status", metav1.ConditionTrue),
			gomega.HaveField("Message", "rolled back at level 2: nothing to undo, the migration had not changed the cluster"),
		))),
	))
	eventually(t, get(ctx, m)).Should(gomega.And(
		gomega.HaveField("Status.Phase", v1alpha1.PhaseRolledBack),
		gomega.HaveField("Status.Rollback.Trigger", "MastodonRollback"),
		gomega.HaveField("Status.Rollback.Reason", "5xx over 50%"),
	))
	// A lower level afterwards is refused: a rollback only escalates.
	lower := rollback(ns, "lower", "to-helm", 1)
	if err := k8sClient.Create(ctx, lower); err != nil {
		t.Fatal(err)
	}
	eventually(t, getRollback(ctx, lower)).Should(gomega.And(
		gomega.HaveField("Status.Phase", v1alpha1.RollbackFailed),
		gomega.HaveField("Status.Conditions", gomega.ContainElement(gomega.HaveField("Message",
			"MastodonMigration to-helm was already rolled back at level 2; a rollback only escalates"))),
	))
}

// installedWithBackup creates the old stack's Deployments and a migration whose status says it
// backed up Cloud SQL instance my-project/<ns> (holding databases) and installed the release, as
// the operator would have written it; the operator carries on from there.
func installedWithBackup(t *testing.T, ctx context.Context, ns string, databases ...string) *v1alpha1.MastodonMigration {
	t.Helper()
	cloudSQL.AddInstance("my-project", ns)
	if err := cloudSQL.AddDatabase("my-project", ns, databases...); err != nil {
		t.Fatal(err)
	}
	backup, err := cloudSQL.AddBackupRun("my-project", ns, sqladmin.BackupRun{Type: "ON_DEMAND"})
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"mastodon-web", "mastodon-streaming", "mastodon-worker"}
	for _, n := range names {
		createAll(t, ctx, deployment(ns, n))
	}
	m := migration(ns, "to-helm")
	m.Spec.Rollback.Database.CloudSQL = &v1alpha1.CloudSQLInstance{Project: "my-project", Instance: ns}
	resumeFrom(t, ctx, m, func(m *v1alpha1.MastodonMigration) {
		var refs []snapshot.Ref
		for _, n := range names {
			refs = append(refs, snapshot.Ref{APIVersion: "apps/v1", Kind: "Deployment", Name: n})
		}
		if _, err := snapshot.Take(ctx, k8sClient, ns, m.Name+"-snapshot-"+string(m.UID)[:8], nil, refs); err != nil {
			t.Fatal(err)
		}
		m.Status.Steps = succeeded("Preflight", "GenerateValues", "Snapshot", "DatabaseBackup", "Install")
		taken := metav1.Now()
		m.Status.DatabaseBackup = &v1alpha1.DatabaseBackupStatus{Instance: ns, ID: backup, State: "SUCCESSFUL", TakenAt: &taken}
	}, func(*v1alpha1.MastodonMigration) {})
	return m
}

// rollbackStep is a step of a MastodonRollback's status, as `kubectl get -o yaml` lists them.
func rollbackStep(rb *v1alpha1.MastodonRollback, name string) v1alpha1.StepStatus {
	for _, s := range rb.Status.Steps {
		if s.Name == name {
			return s
		}
	}
	return v1alpha1.StepStatus{}
}

// A level 3 refused on a shared Cloud SQL instance waits for a person, it has not ended: the
// MastodonRollback stays Running, Stalled with the migration's word on what to do, and follows
// the migration to Succeeded once the person confirms.
func TestALevel3MastodonRollbackWaitsForTheConfirmationAndThenSucceeds(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	m := installedWithBackup(t, ctx, ns, "mastodon", "pixelfed")
	rb := rollback(ns, "restore-db", "to-helm", 3)
	rb.Spec.ConfirmDataLoss = true
	if err := k8sClient.Create(ctx, rb); err != nil {
		t.Fatal(err)
	}

	const refusal = "level 3 refused: Cloud SQL instance my-project/"
	eventually(t, get(ctx, m)).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseFailed))
	waiting := gomega.And(
		gomega.HaveField("Status.Phase", v1alpha1.RollbackRunning),
		gomega.HaveField("Status.Conditions", gomega.ContainElement(gomega.And(
			gomega.HaveField("Type", "Stalled"), gomega.HaveField("Status", metav1.ConditionTrue),
			gomega.HaveField("Reason", "RollbackCheckInstanceFailed"),
			gomega.HaveField("Message", gomega.And(gomega.HavePrefix(refusal), gomega.ContainSubstring("also holds pixelfed"),
				gomega.ContainSubstring("set spec.rollback.database.cloudSQL.sharedInstance: confirmed"))),
		))),
		gomega.WithTransform(func(rb *v1alpha1.MastodonRollback) v1alpha1.StepState {
			return rollbackStep(rb, "RollbackCheckInstance").State
		}, gomega.Equal(v1alpha1.StepFailed)),
	)
	eventually(t, getRollback(ctx, rb)).Should(waiting)
	gomega.NewWithT(t).Consistently(getRollback(ctx, rb)).WithTimeout(2 * time.Second).WithPolling(200 * time.Millisecond).Should(waiting)
	eventually(t, eventsFor(ctx, "MastodonRollback", rb)).Should(gomega.ContainElement(gomega.And(
		gomega.HaveField("Reason", "RollbackWaiting"), gomega.HaveField("Note", gomega.HavePrefix(refusal)))))

	// The person confirms; the migration's level 3 goes on, and the rollback follows it.
	latest, _ := get(ctx, m)()
	confirmed := latest.DeepCopy()
	confirmed.Spec.Rollback.Database.CloudSQL.SharedInstance = v1alpha1.SharedInstanceConfirmed
	if err := k8sClient.Patch(ctx, confirmed, client.MergeFrom(latest)); err != nil {
		t.Fatal(err)
	}
	eventually(t, getRollback(ctx, rb)).Should(gomega.And(
		gomega.HaveField("Status.Phase", v1alpha1.RollbackRunning),
		gomega.HaveField("Status.Conditions", gomega.ContainElement(gomega.And(
			gomega.HaveField("Type", "Stalled"), gomega.HaveField("Status", metav1.ConditionFalse)))),
	))
	// envtest runs no Deployment controller: the old stack turns ready once the test says so.
	eventually(t, get(ctx, m)).Should(gomega.WithTransform(func(m *v1alpha1.MastodonMigration) v1alpha1.StepStatus {
		return stepOf(m, "RollbackRestore")
	}, gomega.And(gomega.HaveField("State", v1alpha1.StepRunning), gomega.HaveField("Message", gomega.HavePrefix("restored; waiting for")))))
	for _, n := range []string{"mastodon-web", "mastodon-streaming", "mastodon-worker"} {
		setRolledOut(t, ctx, deployment(ns, n))
	}
	eventually(t, getRollback(ctx, rb)).Should(gomega.And(
		gomega.HaveField("Status.Phase", v1alpha1.RollbackSucceeded),
		gomega.HaveField("Status.Conditions", gomega.ContainElement(gomega.And(
			gomega.HaveField("Type", "Ready"), gomega.HaveField("Status", metav1.ConditionTrue),
			gomega.HaveField("Message", gomega.HavePrefix("rolled back at level 3"))))),
		gomega.WithTransform(func(rb *v1alpha1.MastodonRollback) []string {
			var out []string
			for _, s := range rb.Status.Steps {
				out = append(out, s.Name+"="+string(s.State))
			}
			return out
		}, gomega.ContainElements("RollbackCheckInstance=Succeeded", "RollbackStopAll=Succeeded", "RollbackDatabase=Succeeded",
			"RollbackRestore=Succeeded")),
	))
	got, _ := get(ctx, m)()
	gomega.NewWithT(t).Expect(cloudSQL.Restored("my-project", ns)).To(gomega.Equal([]string{got.Status.DatabaseBackup.ID}))
}

// Level 3 restores the database only once no pod of either stack is left, Terminating ones
// included, and once the release's hook Jobs that were still running are deleted with their
// pods. envtest runs no ReplicaSet controller and no garbage collector: the test deletes the
// pods as they would.
func TestLevel3RestoresTheDatabaseOnlyOnceEveryPodIsGone(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	g := gomega.NewWithT(t)
	m := installedWithBackup(t, ctx, ns, "mastodon")
	const drain = "e2e.mastodon-operator.io/drain" // a Sidekiq draining its jobs for its grace period
	worker := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mastodon-worker-5d8f-x2x9q",
		Labels: map[string]string{"app": "mastodon-worker"}, Finalizers: []string{drain}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "sidekiq", Image: "ghcr.io/mastodon/mastodon:v4.6.2"}}}}
	// A db-migrate hook that the install left running.
	hook := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mastodon-helm-db-migrate",
		Labels: map[string]string{"app.kubernetes.io/instance": "mastodon-helm"}},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "db-migrate", Image: "ghcr.io/mastodon/mastodon:v4.6.2"}}}}}}
	createAll(t, ctx, worker, hook)
	hookPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mastodon-helm-db-migrate-7xk2p",
		Labels: hook.Spec.Selector.MatchLabels}, Spec: hook.Spec.Template.Spec}
	createAll(t, ctx, hookPod)
	finished := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mastodon-helm-assets-copy",
		Labels: map[string]string{"app.kubernetes.io/instance": "mastodon-helm"}}, Spec: hook.Spec}
	finished.Spec.Selector, finished.Spec.Template.Labels = nil, nil
	createAll(t, ctx, finished)
	now := metav1.Now()
	finished.Status = batchv1.JobStatus{StartTime: &now, CompletionTime: &now, Succeeded: 1, Conditions: []batchv1.JobCondition{
		{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue}, {Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}}
	g.Expect(k8sClient.Status().Update(ctx, finished)).To(gomega.Succeed())

	latest, _ := get(ctx, m)()
	raised := latest.DeepCopy()
	raised.Spec.RollbackLevel, raised.Spec.ConfirmDataLoss = 3, true
	g.Expect(k8sClient.Patch(ctx, raised, client.MergeFrom(latest))).To(gomega.Succeed())

	stopAll := func(m *v1alpha1.MastodonMigration) v1alpha1.StepStatus { return stepOf(m, "RollbackStopAll") }
	notRestored := func() {
		t.Helper()
		gomega.NewWithT(t).Consistently(func() []string { return cloudSQL.Restored("my-project", ns) }).
			WithTimeout(time.Second).WithPolling(100*time.Millisecond).Should(gomega.BeEmpty(), "restored while pods were left")
		got, _ := get(ctx, m)()
		gomega.NewWithT(t).Expect(stepOf(got, "RollbackDatabase").State).To(gomega.Or(gomega.BeEmpty(), gomega.Equal(v1alpha1.StepPending)))
	}
	eventually(t, get(ctx, m)).Should(gomega.WithTransform(stopAll, gomega.And(
		gomega.HaveField("State", v1alpha1.StepRunning),
		gomega.HaveField("Message", "waiting for 2 pods to stop before the database is restored: "+
			"mastodon-helm-db-migrate-7xk2p (Pending), mastodon-worker-5d8f-x2x9q (Pending)"))))
	notRestored()
	for _, n := range []string{"mastodon-web", "mastodon-streaming", "mastodon-worker"} {
		d := &appsv1.Deployment{}
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: n}, d)).To(gomega.Succeed())
		g.Expect(*d.Spec.Replicas).To(gomega.BeZero(), n)
	}
	// The running hook is deleted, foreground, so that it stays until its pods are gone; the
	// finished one is left to the uninstall.
	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(hook), hook)).To(gomega.Succeed())
	g.Expect(hook.DeletionTimestamp).NotTo(gomega.BeNil())
	g.Expect(hook.Finalizers).To(gomega.ContainElement(metav1.FinalizerDeleteDependents))
	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(finished), finished)).To(gomega.Succeed())
	g.Expect(finished.DeletionTimestamp).To(gomega.BeNil())

	// The ReplicaSet controller and the garbage collector delete the pods; the worker drains.
	g.Expect(k8sClient.Delete(ctx, hookPod)).To(gomega.Succeed())
	g.Expect(k8sClient.Delete(ctx, worker)).To(gomega.Succeed())
	eventually(t, get(ctx, m)).Should(gomega.WithTransform(stopAll, gomega.HaveField("Message",
		"waiting for 1 pod to stop before the database is restored: mastodon-worker-5d8f-x2x9q (Terminating)")))
	notRestored()

	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(worker), worker)).To(gomega.Succeed())
	worker.Finalizers = nil
	g.Expect(k8sClient.Update(ctx, worker)).To(gomega.Succeed())
	eventually(t, get(ctx, m)).Should(gomega.WithTransform(func(m *v1alpha1.MastodonMigration) v1alpha1.StepState {
		return stepOf(m, "RollbackDatabase").State
	}, gomega.Equal(v1alpha1.StepSucceeded)))
	got, _ := get(ctx, m)()
	g.Expect(stopAll(got).Message).To(gomega.Equal("3 Deployments of the old stack and the release scaled to 0, " +
		"1 running Job of release mastodon-helm deleted (mastodon-helm-db-migrate); none of their pods is left"))
	g.Expect(cloudSQL.Restored("my-project", ns)).To(gomega.Equal([]string{got.Status.DatabaseBackup.ID}))
}
