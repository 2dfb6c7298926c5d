package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/onsi/gomega"
	"helm.sh/helm/v3/pkg/release"
	appsv1 "k8s.io/api/apps/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/controllers"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
)

// TestInstallsWaitInTheBackground: with two workers and three installs whose web pods can never
// be scheduled, a rollback of another instance still runs at once, and a rollback of a stuck
// instance cancels its install within seconds rather than at its 3 minute timeout, leaving its
// release failed (level 1) or gone (level 2), never pending, and the old stack serving.
func TestInstallsWaitInTheBackground(t *testing.T) {
	ctx := context.Background()
	restartOperator(t, ctx, func(o *controllers.Options) { o.Concurrent = 2 })
	t.Cleanup(func() { restartOperator(t, ctx) })

	_, _, a := migrateTo(t, ctx, "background-a", v1alpha1.PhaseObserving, func(m *v1alpha1.MastodonMigration) {
		m.Spec.Analysis.Window = &metav1.Duration{Duration: 10 * time.Minute}
	})
	timeout := 3 * time.Minute
	type stuckInstance struct {
		m      *v1alpha1.MastodonMigration
		objs   []*unstructured.Unstructured
		before map[string]*unstructured.Unstructured
	}
	var stuck []stuckInstance
	for _, name := range []string{"background-b", "background-c", "background-d"} {
		objs, before, m := migrateTo(t, ctx, name, v1alpha1.PhaseInstalling, func(m *v1alpha1.MastodonMigration) {
			m.Spec.Release.Timeout = &metav1.Duration{Duration: timeout}
			m.Spec.Release.Values = &apiextensionsv1.JSON{Raw: []byte(`{"mastodon": {"web": {"nodeSelector": {"cloud.google.com/gke-nodepool": "no-such-pool"}}}}`)}
		})
		stuck = append(stuck, stuckInstance{m, objs, before})
	}
	// Every install is under way, though there are fewer workers than installs: Helm created
	// each release's web Deployment, whose pods stay Pending.
	for _, s := range stuck {
		eventually(t, func() error {
			return h.Client.Get(ctx, client.ObjectKey{Namespace: s.m.Namespace, Name: "mastodon-helm-web"}, &appsv1.Deployment{})
		}).Should(gomega.Succeed(), s.m.Namespace)
	}
	g := gomega.NewWithT(t)

	requested := time.Now()
	rollBackTo(t, ctx, a, 1)
	took := time.Since(requested)
	t.Logf("level 1 on a took %s while three installs waited on two workers", took.Round(time.Millisecond))
	g.Expect(took).To(gomega.BeNumerically("<", 15*time.Second), "a's rollback waited for the installs")

	b, c, d := stuck[0], stuck[1], stuck[2]
	for _, rb := range []struct {
		stuckInstance
		level int32
	}{{b, 1}, {c, 2}} {
		requested := time.Now()
		rollBackTo(t, ctx, rb.m, rb.level)
		took := time.Since(requested)
		t.Logf("level %d on %s took %s, its install under way (timeout %s)", rb.level, rb.m.Namespace, took.Round(time.Millisecond), timeout)
		g.Expect(took).To(gomega.BeNumerically("<", 30*time.Second), "the rollback waited for the install's timeout")

		got, err := getMigration(ctx, rb.m)()
		g.Expect(err).NotTo(gomega.HaveOccurred())
		g.Expect(stepStates(got)).To(gomega.ContainElement("Install=Failed"))
		rel := helmStatus(t, rb.m)
		if rb.level == 1 {
			g.Expect(rel).NotTo(gomega.BeNil(), "level 1 keeps the release")
			g.Expect(rel.Info.Status.String()).To(gomega.Equal("failed"), "helm status of %s", rb.m.Namespace)
			expectReleaseStopped(g, ctx, rb.m.Namespace, rb.m.Spec.Release.Name)
		} else {
			g.Expect(rel).To(gomega.BeNil(), "level 2 uninstalls the release")
			expectReleaseGoneAndStackRestored(t, g, ctx, rb.m, rb.objs, rb.before)
		}
		for _, o := range rb.objs {
			if o.GetKind() == "Deployment" {
				g.Expect(h.WaitCurrent(ctx, "apps/v1", "Deployment", rb.m.Namespace, o.GetName(), 10*time.Second)).
					To(gomega.Succeed(), "the old stack serves")
			}
		}
	}

	// d's install still waits: the rollbacks canceled only their own.
	still, _ := getMigration(ctx, d.m)()
	g.Expect(still.Status.Phase).To(gomega.Equal(v1alpha1.PhaseInstalling))
	g.Expect(h.Client.Delete(ctx, &v1alpha1.MastodonMigration{ObjectMeta: metav1.ObjectMeta{Namespace: d.m.Namespace, Name: d.m.Name}})).
		To(gomega.Succeed())
}

// restartOperator replaces the shared operator with one configured as given.
func restartOperator(t *testing.T, ctx context.Context, configure ...func(*controllers.Options)) {
	t.Helper()
	if err := operator.Stop(); err != nil {
		t.Fatal(err)
	}
	var err error
	if operator, err = h.StartOperator(ctx, configure...); err != nil {
		t.Fatal(err)
	}
}

// helmStatus is `helm status` of the migration's release: its last revision, or nil.
func helmStatus(t *testing.T, m *v1alpha1.MastodonMigration) *release.Release {
	t.Helper()
	cfg, err := helm.NewConfig(h.Cluster.RESTConfig(), m.Namespace, nil)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := helm.Status(cfg, m.Spec.Release.Name)
	if err != nil {
		t.Fatal(fmt.Errorf("helm status: %w", err))
	}
	return rel
}
