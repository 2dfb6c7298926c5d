package controllers_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

// A release's scheduler consumer that does not come up leaves no Sidekiq on the scheduler queue:
// the hand-over fails at spec.release.timeout and, without automatic rollback, tells on-call how
// to bring the old one back; status says the scheduler has no holder.
func TestASchedulerHandOverThatTimesOutSaysNothingConsumesTheQueue(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	old := deployment(ns, "mastodon-worker")
	old.Spec.Template.Spec.Containers[0].Command = []string{"bundle", "exec", "sidekiq", "-c", "15"}
	// Never ready: envtest runs no Deployment controller.
	release := releaseDeployment(ns, "sidekiq-all-queues")
	release.Spec.Replicas = ptr.To[int32](0)
	release.Spec.Template.Spec.Containers[0].Command = []string{"bundle", "exec", "sidekiq", "-c", "25", "-q", "default,8", "-q", "scheduler"}
	createAll(t, ctx, deployment(ns, "mastodon-web"), deployment(ns, "mastodon-streaming"), old, release)
	m := migration(ns, "to-helm")
	raw, err := json.Marshal(fixture.OfficialChartMinimalValues("mastodon"))
	if err != nil {
		t.Fatal(err)
	}
	m.Spec.Release.Values = &apiextensionsv1.JSON{Raw: raw}
	m.Spec.Rollback.Automatic = ptr.To(false)
	resumeFrom(t, ctx, m, func(m *v1alpha1.MastodonMigration) {
		// The hand-over has run for longer than the release timeout (10m by default).
		started := metav1.NewMicroTime(time.Now().Add(-11 * time.Minute))
		m.Status.Steps = append(succeeded("Preflight", "GenerateValues", "Snapshot", "DatabaseBackup", "Install", "Verify", "Baseline"),
			v1alpha1.StepStatus{Name: "HandOverScheduler", State: v1alpha1.StepRunning, Generation: 1, StartedAt: &started})
	}, func(*v1alpha1.MastodonMigration) {})

	eventually(t, get(ctx, m)).Should(stopped("HandOverScheduler", "not ready within 10m0s (spec.release.timeout)",
		"the scheduler consumer mastodon-worker is stopped; waiting for mastodon-helm-sidekiq-all-queues",
		"no Sidekiq process consumes the scheduler queue"))
	got, _ := get(ctx, m)()
	t.Logf("HandOverScheduler: %s", stepOf(got, "HandOverScheduler").Message)
	g := gomega.NewWithT(t)
	g.Expect(got.Status.Scheduler).To(gomega.HaveField("Holder", ""))
	g.Expect(got.Status.Scheduler.HandOvers).To(gomega.ConsistOf(gomega.And(
		gomega.HaveField("From", "mastodon-worker"), gomega.HaveField("To", "mastodon-helm-sidekiq-all-queues"),
		gomega.HaveField("OldStoppedAt", gomega.Not(gomega.BeNil())), gomega.HaveField("NewStartedAt", gomega.BeNil()))))
	for name, replicas := range map[string]int32{"mastodon-worker": 0, "mastodon-helm-sidekiq-all-queues": 1} {
		d := &appsv1.Deployment{}
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d)).To(gomega.Succeed())
		g.Expect(*d.Spec.Replicas).To(gomega.Equal(replicas), name)
	}
}
