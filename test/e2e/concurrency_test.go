package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// TestARollbackDoesNotWaitForAnotherInstancesInstall: while instance b's install waits on web
// pods that can never be scheduled, on-call rolls instance a back. The operator reconciles
// several migrations at once (--concurrent), so a's traffic comes back in seconds, not when b's
// install gives up.
func TestARollbackDoesNotWaitForAnotherInstancesInstall(t *testing.T) {
	ctx := context.Background()
	_, _, a := migrateTo(t, ctx, "concurrent-a", v1alpha1.PhaseObserving, func(m *v1alpha1.MastodonMigration) {
		m.Spec.Analysis.Window = &metav1.Duration{Duration: 10 * time.Minute}
	})
	stuckFor := 2 * time.Minute
	_, _, b := migrateTo(t, ctx, "concurrent-b", v1alpha1.PhaseInstalling, func(m *v1alpha1.MastodonMigration) {
		m.Spec.Release.Timeout = &metav1.Duration{Duration: stuckFor}
		m.Spec.Release.Values = &apiextensionsv1.JSON{Raw: []byte(`{"mastodon": {"web": {"nodeSelector": {"cloud.google.com/gke-nodepool": "no-such-pool"}}}}`)}
	})
	// b's install is under way: Helm created the web Deployment, whose pods stay Pending.
	eventually(t, func() error {
		return h.Client.Get(ctx, client.ObjectKey{Namespace: b.Namespace, Name: "mastodon-helm-web"}, &appsv1.Deployment{})
	}).Should(gomega.Succeed())

	requested := time.Now()
	rollBackTo(t, ctx, a, 1)
	took := time.Since(requested)
	t.Logf("level 1 on a took %s while b's install waited (its timeout %s)", took.Round(time.Millisecond), stuckFor)
	g := gomega.NewWithT(t)
	g.Expect(took).To(gomega.BeNumerically("<", 30*time.Second), "a's rollback waited for b's install")
	still, _ := getMigration(ctx, b)()
	g.Expect(still.Status.Phase).To(gomega.Equal(v1alpha1.PhaseInstalling), "b's install was still waiting")

	// Stop b: its install gives up at its timeout, as it would have anyway.
	g.Expect(h.Client.Delete(ctx, &v1alpha1.MastodonMigration{ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, Name: b.Name}})).
		To(gomega.Or(gomega.Succeed(), gomega.MatchError(gomega.ContainSubstring("not found"))))
}
