package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
)

// TestIngressMethodPointsTheBackendsAtTheRelease moves the traffic by the Ingress method: every
// Mastodon backend of the Ingress names the release's Service of its component, which carries
// the source Service's load balancer annotations; the media proxy's rule and every source
// Service are untouched. Level 1 puts the Ingress back exactly.
func TestIngressMethodPointsTheBackendsAtTheRelease(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-ingress"
	objs, before, m := migrateTo(t, ctx, ns, v1alpha1.PhaseObserving, func(m *v1alpha1.MastodonMigration) {
		m.Spec.Traffic.Method = v1alpha1.TrafficIngress
		m.Spec.Analysis.Window = &metav1.Duration{Duration: 10 * time.Minute}
	})
	g := gomega.NewWithT(t)
	ing := &networkingv1.Ingress{}
	g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mastodon"}, ing)).To(gomega.Succeed())
	backends := map[string]string{}
	for _, rule := range ing.Spec.Rules {
		for _, p := range rule.HTTP.Paths {
			backends[rule.Host+p.Path] = p.Backend.Service.Name
		}
	}
	for path, svc := range backends {
		switch svc {
		case "mastodon-helm-web", "mastodon-helm-streaming", "mastodon-media-proxy":
		default:
			t.Errorf("backend %s still names %s", path, svc)
		}
	}
	g.Expect(backends).To(gomega.ContainElements("mastodon-helm-web", "mastodon-helm-streaming", "mastodon-media-proxy"))
	after := liveObjects(t, ctx, ns, objs)
	for _, name := range []string{"mastodon-web", "mastodon-assets", "mastodon-emoji", "mastodon-streaming", "mastodon-media-proxy"} {
		g.Expect(snapshot.Compare(after["Service/"+name], before["Service/"+name])).To(gomega.BeEmpty(), name)
	}
	source, release := &corev1.Service{}, &corev1.Service{}
	g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mastodon-web"}, source)).To(gomega.Succeed())
	g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mastodon-helm-web"}, release)).To(gomega.Succeed())
	for _, key := range []string{"cloud.google.com/neg", "beta.cloud.google.com/backend-config"} {
		g.Expect(source.Annotations).To(gomega.HaveKey(key))
		g.Expect(release.Annotations).To(gomega.HaveKeyWithValue(key, source.Annotations[key]), key)
	}

	rollBackTo(t, ctx, m, 1)
	after = liveObjects(t, ctx, ns, objs)
	g.Expect(snapshot.Compare(after["Ingress/mastodon"], before["Ingress/mastodon"])).To(gomega.BeEmpty())
}
