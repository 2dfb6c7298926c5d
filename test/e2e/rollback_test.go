package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/database/sqladmintest"
	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
)

// TestLevel1RollbackMovesTheTrafficBackToTheOldPods raises spec.rollbackLevel, as on-call would,
// while the new stack is watched: the Services select the old pods again, exactly as before.
func TestLevel1RollbackMovesTheTrafficBackToTheOldPods(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-level1"
	objs, before, m := migrateTo(t, ctx, ns, v1alpha1.PhaseObserving, func(m *v1alpha1.MastodonMigration) {
		m.Spec.Analysis.Window = &metav1.Duration{Duration: 10 * time.Minute}
	})
	rollBackTo(t, ctx, m, 1)
	got, _ := getMigration(ctx, m)()
	g := gomega.NewWithT(t)
	g.Expect(got.Status.Rollback).To(gomega.And(
		gomega.HaveField("Level", int32(1)), gomega.HaveField("Trigger", "RollbackLevel"),
		gomega.HaveField("FinishedAt", gomega.Not(gomega.BeNil()))))
	g.Expect(got.Status.Traffic.Target).To(gomega.Equal(v1alpha1.TrafficToSource))
	g.Expect(meta.FindStatusCondition(got.Status.Conditions, "Ready")).To(gomega.HaveField("Reason", "RolledBack"))

	after := liveObjects(t, ctx, ns, objs)
	for _, name := range []string{"mastodon-web", "mastodon-assets", "mastodon-emoji", "mastodon-streaming"} {
		g.Expect(snapshot.Compare(after["Service/"+name], before["Service/"+name])).To(gomega.BeEmpty(), name)
	}
	expectReleaseStopped(g, ctx, ns, "mastodon-helm")
	for _, name := range []string{"mastodon-web", "mastodon-streaming", "mastodon-worker"} {
		g.Expect(h.WaitCurrent(ctx, "apps/v1", "Deployment", ns, name, time.Minute)).To(gomega.Succeed())
	}
}

// TestLevel2RollbackByAMastodonRollbackRestoresTheStackExactly rolls a completed migration back
// with a MastodonRollback: the release is gone and every object is as it was before.
func TestLevel2RollbackByAMastodonRollbackRestoresTheStackExactly(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-level2"
	var sampler *schedulerSampler
	objs, before, m := migrateTo(t, ctx, ns, v1alpha1.PhaseCompleted, func(m *v1alpha1.MastodonMigration) {
		shortWindow(m)
		sampler = watchScheduler(t, ns, "mastodon-helm")
	})

	rb := &v1alpha1.MastodonRollback{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "back-to-kustomize"},
		Spec: v1alpha1.MastodonRollbackSpec{MigrationRef: v1alpha1.LocalObjectReference{Name: m.Name}, Level: 2,
			Reason: "sidekiq jobs are not processed"},
	}
	if err := h.Client.Create(ctx, rb); err != nil {
		t.Fatal(err)
	}
	getRollback := func() (*v1alpha1.MastodonRollback, error) {
		got := &v1alpha1.MastodonRollback{}
		return got, h.Client.Get(ctx, client.ObjectKeyFromObject(rb), got)
	}
	eventually(t, getRollback).Should(gomega.HaveField("Status.Phase", v1alpha1.RollbackSucceeded))
	gotRB, _ := getRollback()
	var stepNames []string
	for _, s := range gotRB.Status.Steps {
		stepNames = append(stepNames, s.Name+"="+string(s.State))
	}
	g := gomega.NewWithT(t)
	g.Expect(stepNames).To(gomega.Equal([]string{"Resolve=Succeeded", "RollbackSource=Succeeded", "RollbackTraffic=Succeeded", "RollbackHandBackScheduler=Succeeded",
		"RollbackScaleDownRelease=Succeeded", "RollbackUninstall=Succeeded", "RollbackRestore=Succeeded"}))
	got, _ := getMigration(ctx, m)()
	clash, seen := sampler.done()
	expectSchedulerHandedOver(t, got, "mastodon-worker", clash, seen, 2)
	g.Expect(got.Status.Phase).To(gomega.Equal(v1alpha1.PhaseRolledBack))
	g.Expect(got.Status.Rollback).To(gomega.And(gomega.HaveField("Trigger", "MastodonRollback"),
		gomega.HaveField("Reason", "sidekiq jobs are not processed")))

	// The release is gone, and every object of the stack is as it was before the migration.
	expectReleaseGoneAndStackRestored(t, g, ctx, m, objs, before)
}

// TestAnUnreadyNewStackIsRolledBackAutomatically injects a failure once the traffic has moved:
// the release's web pods are replaced by pods no node can run. The operator rolls back at level
// 1 by itself, and the Services select the old pods again.
func TestAnUnreadyNewStackIsRolledBackAutomatically(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-automatic"
	objs, before, m := migrateTo(t, ctx, ns, v1alpha1.PhaseObserving, func(m *v1alpha1.MastodonMigration) {
		m.Spec.Analysis.Window = &metav1.Duration{Duration: 10 * time.Minute}
		m.Spec.Analysis.Interval = &metav1.Duration{Duration: 5 * time.Second}
	})

	web := &appsv1.Deployment{}
	if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mastodon-helm-web"}, web); err != nil {
		t.Fatal(err)
	}
	broken := web.DeepCopy()
	broken.Spec.Template.Spec.NodeSelector = map[string]string{"cloud.google.com/gke-nodepool": "no-such-pool"}
	if err := h.Client.Patch(ctx, broken, client.MergeFrom(web)); err != nil {
		t.Fatal(err)
	}

	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseRolledBack))
	got, _ := getMigration(ctx, m)()
	g := gomega.NewWithT(t)
	g.Expect(got.Status.Rollback).To(gomega.And(
		gomega.HaveField("Level", int32(1)), gomega.HaveField("Trigger", "Automatic"),
		gomega.HaveField("Reason", gomega.ContainSubstring("mastodon-helm-web"))))
	g.Expect(got.Status.Analysis).To(gomega.HaveField("Verdict", "Unhealthy"))
	after := liveObjects(t, ctx, ns, objs)
	for _, name := range []string{"mastodon-web", "mastodon-assets", "mastodon-emoji", "mastodon-streaming"} {
		g.Expect(snapshot.Compare(after["Service/"+name], before["Service/"+name])).To(gomega.BeEmpty(), name)
	}
	eventually(t, func() ([]string, error) {
		var list eventsv1.EventList
		err := h.Client.List(ctx, &list, client.InNamespace(ns))
		var reasons []string
		for _, e := range list.Items {
			reasons = append(reasons, e.Reason)
		}
		return reasons, err
	}).Should(gomega.ContainElements("AutomaticRollback", "RolledBack"))
}

// TestLevel3RollbackRestoresTheDatabaseBackup backs the database up before the install, then
// rolls back at level 3 with a confirmed MastodonRollback: every workload stops, the backup is
// restored once through the Cloud SQL Admin API, and the stack is restored as level 2 does.
func TestLevel3RollbackRestoresTheDatabaseBackup(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-level3"
	objs, before, m := migrateTo(t, ctx, ns, v1alpha1.PhaseObserving, func(m *v1alpha1.MastodonMigration) {
		m.Spec.Rollback.Database.CloudSQL = &v1alpha1.CloudSQLInstance{Project: "my-project", Instance: "mastodon-db"}
		m.Spec.Analysis.Window = &metav1.Duration{Duration: 10 * time.Minute}
	})
	got, _ := getMigration(ctx, m)()
	g := gomega.NewWithT(t)
	g.Expect(got.Status.DatabaseBackup).To(gomega.And(gomega.HaveField("State", "SUCCESSFUL"), gomega.HaveField("ID", gomega.Not(gomega.BeEmpty()))))

	unconfirmed := &v1alpha1.MastodonRollback{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "restore-db"},
		Spec:       v1alpha1.MastodonRollbackSpec{MigrationRef: v1alpha1.LocalObjectReference{Name: m.Name}, Level: 3},
	}
	err := h.Client.Create(ctx, unconfirmed)
	g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring("set confirmDataLoss: true to confirm")))

	restores := len(cloudSQL.CallsTo(sqladmintest.InstancesRestoreBackup)) // other tests' restores on the shared server
	confirmed := unconfirmed.DeepCopy()
	confirmed.Spec.ConfirmDataLoss = true
	confirmed.Spec.Reason = "db:migrate corrupted the accounts table"
	g.Expect(h.Client.Create(ctx, confirmed)).To(gomega.Succeed())
	getRollback := func() (*v1alpha1.MastodonRollback, error) {
		rb := &v1alpha1.MastodonRollback{}
		return rb, h.Client.Get(ctx, client.ObjectKeyFromObject(confirmed), rb)
	}
	eventually(t, getRollback).WithTimeout(2 * time.Minute).Should(gomega.HaveField("Status.Phase", v1alpha1.RollbackSucceeded))
	rb, _ := getRollback()
	var stepNames []string
	for _, s := range rb.Status.Steps {
		stepNames = append(stepNames, s.Name+"="+string(s.State))
	}
	g.Expect(stepNames).To(gomega.Equal([]string{"Resolve=Succeeded", "RollbackCheckInstance=Succeeded", "RollbackStopAll=Succeeded", "RollbackDatabase=Succeeded",
		"RollbackTraffic=Succeeded", "RollbackUninstall=Succeeded", "RollbackRestore=Succeeded"}))
	got, _ = getMigration(ctx, m)()
	g.Expect(cloudSQL.CallsTo(sqladmintest.InstancesRestoreBackup)).To(gomega.HaveLen(restores+1), "the backup is restored exactly once")
	g.Expect(cloudSQL.Restored("my-project", "mastodon-db")).To(gomega.Equal([]string{got.Status.DatabaseBackup.ID}))
	after := liveObjects(t, ctx, ns, objs)
	for key, b := range before {
		g.Expect(snapshot.Compare(after[key], b)).To(gomega.BeEmpty(), key)
	}
}

// TestLevel3RestoresOnlyOnceEveryPodIsGone: the old web pods (Puma) and the release's Sidekiq
// pods stay Terminating after level 3 scales their Deployments to 0, as pods that drain for
// their grace period do; the Cloud SQL restore is not asked for until the last one is gone.
func TestLevel3RestoresOnlyOnceEveryPodIsGone(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-level3-draining"
	_, _, m := migrateTo(t, ctx, ns, v1alpha1.PhaseObserving, func(m *v1alpha1.MastodonMigration) {
		m.Spec.Rollback.Database.CloudSQL = &v1alpha1.CloudSQLInstance{Project: "my-project", Instance: "mastodon-db"}
		m.Spec.Analysis.Window = &metav1.Duration{Duration: 10 * time.Minute}
	})
	draining := []client.MatchingLabels{{"app": "mastodon-web"},
		{"app.kubernetes.io/instance": "mastodon-helm", "app.kubernetes.io/component": "sidekiq-worker"}}
	for _, pods := range draining {
		holdPods(t, ctx, ns, pods, true)
	}
	restores := len(cloudSQL.CallsTo(sqladmintest.InstancesRestoreBackup)) // other tests' restores on the shared server
	latest, _ := getMigration(ctx, m)()
	raised := latest.DeepCopy()
	raised.Spec.RollbackLevel, raised.Spec.ConfirmDataLoss = 3, true
	g := gomega.NewWithT(t)
	g.Expect(h.Client.Patch(ctx, raised, client.MergeFrom(latest))).To(gomega.Succeed())

	step := func(name string) func(*v1alpha1.MastodonMigration) v1alpha1.StepStatus {
		return func(m *v1alpha1.MastodonMigration) v1alpha1.StepStatus {
			for _, s := range m.Status.Steps {
				if s.Name == name {
					return s
				}
			}
			return v1alpha1.StepStatus{}
		}
	}
	waiting := gomega.WithTransform(step("RollbackStopAll"), gomega.And(gomega.HaveField("State", v1alpha1.StepRunning),
		gomega.HaveField("Message", gomega.MatchRegexp(`^waiting for \d+ pods to stop before the database is restored: `+
			`(mastodon-(helm-sidekiq-worker|web)-\S+ \(Terminating\)(, | and \d+ more$|$))+`))))
	eventually(t, getMigration(ctx, m)).Should(waiting)
	g.Consistently(func(g gomega.Gomega) {
		g.Expect(cloudSQL.CallsTo(sqladmintest.InstancesRestoreBackup)).To(gomega.HaveLen(restores), "restored beside Terminating pods")
		got, err := getMigration(ctx, m)()
		g.Expect(err).NotTo(gomega.HaveOccurred())
		g.Expect(got).To(waiting)
		g.Expect(step("RollbackDatabase")(got).State).To(gomega.Or(gomega.BeEmpty(), gomega.Equal(v1alpha1.StepPending)))
	}).WithTimeout(3 * time.Second).WithPolling(200 * time.Millisecond).Should(gomega.Succeed())
	got, _ := getMigration(ctx, m)()
	t.Logf("while the pods drain: %s", step("RollbackStopAll")(got).Message)

	for _, pods := range draining {
		holdPods(t, ctx, ns, pods, false)
	}
	eventually(t, getMigration(ctx, m)).WithTimeout(2 * time.Minute).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseRolledBack))
	got, _ = getMigration(ctx, m)()
	t.Logf("step RollbackStopAll: %s", step("RollbackStopAll")(got).Message)
	g.Expect(cloudSQL.CallsTo(sqladmintest.InstancesRestoreBackup)).To(gomega.HaveLen(restores + 1))
	g.Expect(step("RollbackDatabase")(got).StartedAt.Time).NotTo(gomega.BeTemporally("<", step("RollbackStopAll")(got).FinishedAt.Time))
}

// TestEachLevelFromTheOtherTrigger runs level 1 from a MastodonRollback and level 3 from
// spec.rollbackLevel, the triggers the tests above do not use for them.
func TestEachLevelFromTheOtherTrigger(t *testing.T) {
	ctx := context.Background()
	t.Run("level 1 by a MastodonRollback", func(t *testing.T) {
		ns := "mastodon-level1-rollback"
		objs, before, m := migrateTo(t, ctx, ns, v1alpha1.PhaseObserving, func(m *v1alpha1.MastodonMigration) {
			m.Spec.Analysis.Window = &metav1.Duration{Duration: 10 * time.Minute}
		})
		rb := &v1alpha1.MastodonRollback{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "traffic-back"},
			Spec:       v1alpha1.MastodonRollbackSpec{MigrationRef: v1alpha1.LocalObjectReference{Name: m.Name}, Level: 1},
		}
		if err := h.Client.Create(ctx, rb); err != nil {
			t.Fatal(err)
		}
		eventually(t, func() (*v1alpha1.MastodonRollback, error) {
			got := &v1alpha1.MastodonRollback{}
			return got, h.Client.Get(ctx, client.ObjectKeyFromObject(rb), got)
		}).Should(gomega.HaveField("Status.Phase", v1alpha1.RollbackSucceeded))
		got, _ := getMigration(ctx, m)()
		g := gomega.NewWithT(t)
		g.Expect(got.Status.Rollback).To(gomega.And(gomega.HaveField("Level", int32(1)), gomega.HaveField("Trigger", "MastodonRollback")))
		after := liveObjects(t, ctx, ns, objs)
		for _, name := range []string{"mastodon-web", "mastodon-assets", "mastodon-emoji", "mastodon-streaming"} {
			g.Expect(snapshot.Compare(after["Service/"+name], before["Service/"+name])).To(gomega.BeEmpty(), name)
		}
	})
	t.Run("level 3 by spec.rollbackLevel", func(t *testing.T) {
		ns := "mastodon-level3-spec"
		objs, before, m := migrateTo(t, ctx, ns, v1alpha1.PhaseObserving, func(m *v1alpha1.MastodonMigration) {
			m.Spec.Rollback.Database.CloudSQL = &v1alpha1.CloudSQLInstance{Project: "my-project", Instance: "mastodon-db"}
			m.Spec.Analysis.Window = &metav1.Duration{Duration: 10 * time.Minute}
		})
		restores := len(cloudSQL.CallsTo(sqladmintest.InstancesRestoreBackup))
		latest, _ := getMigration(ctx, m)()
		raised := latest.DeepCopy()
		raised.Spec.RollbackLevel = 3
		g := gomega.NewWithT(t)
		g.Expect(h.Client.Patch(ctx, raised, client.MergeFrom(latest))).To(gomega.MatchError(gomega.ContainSubstring("confirmDataLoss")))
		raised.Spec.ConfirmDataLoss = true
		g.Expect(h.Client.Patch(ctx, raised, client.MergeFrom(latest))).To(gomega.Succeed())
		eventually(t, getMigration(ctx, m)).WithTimeout(2 * time.Minute).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseRolledBack))
		got, _ := getMigration(ctx, m)()
		g.Expect(got.Status.Rollback).To(gomega.And(gomega.HaveField("Level", int32(3)), gomega.HaveField("Trigger", "RollbackLevel")))
		g.Expect(cloudSQL.CallsTo(sqladmintest.InstancesRestoreBackup)).To(gomega.HaveLen(restores + 1))
		g.Expect(cloudSQL.Restored("my-project", "mastodon-db")).To(gomega.ContainElement(got.Status.DatabaseBackup.ID))
		after := liveObjects(t, ctx, ns, objs)
		for key, b := range before {
			g.Expect(snapshot.Compare(after[key], b)).To(gomega.BeEmpty(), key)
		}
	})
}
