package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
)

func maintenance(m *v1alpha1.MastodonMigration) {
	m.Spec.Strategy = v1alpha1.StrategyMaintenance
	shortWindow(m)
}

// TestMaintenanceMigrationCompletes runs the Maintenance strategy: the maintenance page takes the
// traffic, the old stack stops, the release is installed, the traffic moves to it and the page
// is removed.
func TestMaintenanceMigrationCompletes(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-maintenance"
	objs, err := h.DeployMastodon(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	before := liveObjects(t, ctx, ns, objs)
	m := sampleMigration(t, ns)
	maintenance(m)
	m.Spec.Maintenance.Page = "<h1>back at 3:15</h1>"
	if err := h.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	// What the web Service selects while the migration runs: the old pods, the maintenance
	// page's, then the release's.
	seen := map[string]bool{}
	g := gomega.NewWithT(t)
	eventually(t, func() (v1alpha1.Phase, error) {
		svc := &corev1.Service{}
		if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mastodon-web"}, svc); err != nil {
			return "", err
		}
		seen[svc.Spec.Selector["app.kubernetes.io/name"]] = true
		if svc.Spec.Selector["app.kubernetes.io/name"] == "mastodon-maintenance" {
			page := &corev1.ConfigMap{}
			g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: m.Name + "-maintenance"}, page)).To(gomega.Succeed())
			g.Expect(page.Data).To(gomega.ContainElement("<h1>back at 3:15</h1>"))
		}
		got, err := getMigration(ctx, m)()
		return got.Status.Phase, err
	}).WithPolling(50 * time.Millisecond).Should(gomega.Equal(v1alpha1.PhaseCompleted))
	g.Expect(seen).To(gomega.HaveKey("mastodon-maintenance"), "the maintenance page never took the traffic")

	got, _ := getMigration(ctx, m)()
	g.Expect(stepStates(got)).To(gomega.Equal([]string{"Preflight=Succeeded", "GenerateValues=Succeeded", "Snapshot=Succeeded",
		"Baseline=Succeeded", "MaintenancePageOn=Succeeded", "StopOldStack=Succeeded", "DatabaseBackup=Skipped", "Install=Succeeded",
		"Verify=Succeeded", "HandOverScheduler=Succeeded", "ShiftTraffic=Succeeded", "MaintenancePageOff=Succeeded", "Observe=Succeeded", "Finish=Succeeded"}))
	after := liveObjects(t, ctx, ns, objs)
	for source, release := range map[string]string{"mastodon-web": "mastodon-helm-web", "mastodon-assets": "mastodon-helm-web",
		"mastodon-emoji": "mastodon-helm-web", "mastodon-streaming": "mastodon-helm-streaming"} {
		svc := &corev1.Service{}
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: release}, svc)).To(gomega.Succeed())
		g.Expect(after["Service/"+source].Object).To(gomega.HaveKeyWithValue("spec",
			gomega.HaveKeyWithValue("selector", gomega.BeEquivalentTo(toAny(svc.Spec.Selector)))), source)
	}
	for _, key := range []string{"Service/mastodon-media-proxy", "Deployment/mastodon-media-proxy", "Ingress/mastodon"} {
		g.Expect(snapshot.Compare(after[key], before[key])).To(gomega.BeEmpty(), key)
	}
	for _, name := range []string{"mastodon-web", "mastodon-streaming", "mastodon-worker"} {
		d := &appsv1.Deployment{}
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d)).To(gomega.Succeed())
		g.Expect(*d.Spec.Replicas).To(gomega.BeZero(), name)
	}
	for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}, &corev1.ConfigMap{}} {
		err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: m.Name + "-maintenance"}, obj)
		g.Expect(apierrors.IsNotFound(err)).To(gomega.BeTrue(), "the maintenance page is left: %T %v", obj, err)
	}
}

// TestMaintenanceSurvivesARestartInEveryStep restarts the operator as each step starts.
func TestMaintenanceSurvivesARestartInEveryStep(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-maintenance-restarts"
	if _, err := h.DeployMastodon(ctx, ns); err != nil {
		t.Fatal(err)
	}
	sampler := watchScheduler(t, ns, "mastodon-helm")
	m := sampleMigration(t, ns)
	maintenance(m)
	if err := h.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	restartedIn := restartInEveryStep(t, ctx, m)
	g := gomega.NewWithT(t)
	for _, step := range []string{"MaintenancePageOn", "StopOldStack", "Install", "HandOverScheduler", "ShiftTraffic", "MaintenancePageOff", "Finish"} {
		g.Expect(restartedIn).To(gomega.HaveKey(step), "the operator was not restarted while %s ran", step)
	}
	expectOneDeployedRevision(g, ctx, ns, "mastodon-helm")
	got, _ := getMigration(ctx, m)()
	clash, seen := sampler.done()
	expectSchedulerHandedOver(t, got, "mastodon-helm-sidekiq-scheduler", clash, seen, 1)
}

// TestMaintenanceLevel2RollbackRestoresTheStackExactly rolls back a Maintenance migration while
// it is watched: the old stack runs again, the maintenance page is gone, and every object is as
// it was.
func TestMaintenanceLevel2RollbackRestoresTheStackExactly(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-maintenance-level2"
	objs, before, m := migrateTo(t, ctx, ns, v1alpha1.PhaseObserving, func(m *v1alpha1.MastodonMigration) {
		m.Spec.Strategy = v1alpha1.StrategyMaintenance
		m.Spec.Analysis.Window = &metav1.Duration{Duration: 10 * time.Minute}
	})
	rollBackTo(t, ctx, m, 2)
	got, _ := getMigration(ctx, m)()
	g := gomega.NewWithT(t)
	g.Expect(stepStates(got)).To(gomega.ContainElements("RollbackSource=Succeeded", "RollbackTraffic=Succeeded",
		"RollbackRemoveMaintenancePage=Succeeded", "RollbackUninstall=Succeeded", "RollbackRestore=Succeeded"))
	after := liveObjects(t, ctx, ns, objs)
	for key, b := range before {
		g.Expect(snapshot.Compare(after[key], b)).To(gomega.BeEmpty(), key)
	}
	for _, name := range []string{"mastodon-web", "mastodon-streaming", "mastodon-worker"} {
		g.Expect(h.WaitCurrent(ctx, "apps/v1", "Deployment", ns, name, time.Minute)).To(gomega.Succeed())
	}
}

func toAny(in map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range in {
		out[k] = v
	}
	return out
}
