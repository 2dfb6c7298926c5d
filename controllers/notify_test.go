package controllers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/metrics"
	"github.com/mastodon-operator/mastodon-operator/internal/notify"
)

// hookServer is a local webhook receiver that records every body; hang holds each request until
// the test ends, as a receiver that never answers.
type hookServer struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []string
}

func newHookServer(t *testing.T, hang bool) *hookServer {
	s := &hookServer{}
	release := make(chan struct{})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.bodies = append(s.bodies, string(body))
		s.mu.Unlock()
		if hang {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(func() { close(release); s.Close() })
	return s
}

func (s *hookServer) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies...)
}

// kinds are the webhook messages' kinds, in the order they came.
func (s *hookServer) kinds() []string {
	var out []string
	for _, b := range s.received() {
		var m notify.Message
		if json.Unmarshal([]byte(b), &m) == nil {
			out = append(out, string(m.Kind)+" "+m.Summary)
		}
	}
	return out
}

// seriesOf is what the metrics endpoint serves about a namespace's migrations.
func seriesOf(ns string) func() ([]string, error) {
	return func() ([]string, error) {
		families, err := ctrlmetrics.Registry.Gather()
		if err != nil {
			return nil, err
		}
		var text bytes.Buffer
		for _, f := range families {
			if _, err := expfmt.MetricFamilyToText(&text, f); err != nil {
				return nil, err
			}
		}
		var out []string
		for _, line := range strings.Split(text.String(), "\n") {
			if strings.Contains(line, `namespace="`+ns+`"`) {
				out = append(out, line)
			}
		}
		return out, nil
	}
}

// TestNotificationsAndMetricsFollowTheStatus runs a migration whose preflight finds its source
// missing, then a level 1 rollback, with both receivers configured from a Secret and the Slack
// one hanging: the webhook gets each transition once, with what to do; no payload holds a value
// of the stack's Secrets or the receivers' tokens; the rollback is not delayed; the metrics say
// what status says, and go with the migration.
func TestNotificationsAndMetricsFollowTheStatus(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	hook, slack := newHookServer(t, false), newHookServer(t, true)
	secrets := []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mastodon"},
			StringData: map[string]string{"OTP_SECRET": "otp-value-5f2e", "SECRET_KEY_BASE": "skb-value-91ac"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mastodon-notify"}, StringData: map[string]string{
			"webhookURL": hook.URL + "/hooks/wh-token-4d1a", "slackURL": slack.URL + "/services/T0/B0/sl-token-77c3"}},
	}
	for _, s := range secrets {
		if err := k8sClient.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	rollbacks := testutil.ToFloat64(metrics.Rollbacks.WithLabelValues("1", "RollbackLevel"))
	m := migration(ns, "to-helm")
	m.Spec.Release.SecretEnv = []v1alpha1.SecretEnvVar{{Name: "OTP_SECRET", SecretName: "mastodon", Key: "OTP_SECRET"}}
	m.Spec.Notifications = &v1alpha1.NotificationsSpec{SecretRef: v1alpha1.LocalObjectReference{Name: "mastodon-notify"}}
	if err := k8sClient.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	eventually(t, hook.kinds).Should(gomega.Equal([]string{
		"PhaseChanged " + ns + "/to-helm: phase Pending -> Preflight",
		"PreflightFindings " + ns + "/to-helm: preflight found 5 blocking, 0 changing, 0 informational",
	}))
	got, _ := get(ctx, m)()
	g := gomega.NewWithT(t)
	g.Expect(got.Status.PreflightSummary).To(gomega.Equal(&v1alpha1.PreflightSummary{Blocks: 5}))
	eventually(t, seriesOf(ns)).Should(gomega.ContainElements(
		`mastodon_migration_phase{name="to-helm",namespace="`+ns+`",phase="Preflight"} 1`,
		`mastodon_migration_preflight_findings{class="Blocks",name="to-helm",namespace="`+ns+`"} 5`,
		`mastodon_migration_stalled{name="to-helm",namespace="`+ns+`"} 1`,
	))

	raised := got.DeepCopy()
	raised.Spec.RollbackLevel = 1
	began := time.Now()
	if err := k8sClient.Patch(ctx, raised, client.MergeFrom(got)); err != nil {
		t.Fatal(err)
	}
	eventually(t, get(ctx, m)).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseRolledBack))
	// Slack hangs on its first message: the rollback does not wait for it.
	g.Expect(time.Since(began)).To(gomega.BeNumerically("<", 5*time.Second))
	// The watch of the restored stack finds no old pods (there are none here) and says so.
	eventually(t, get(ctx, m)).Should(gomega.HaveField("Status.Rollback.Result", gomega.HavePrefix("Unhealthy: ")))
	eventually(t, hook.kinds).Should(gomega.HaveLen(5))
	g.Expect(hook.kinds()[2:]).To(gomega.Equal([]string{
		"RollbackStarted " + ns + "/to-helm: rolling back at level 1 (RollbackLevel)",
		"RollbackFinished " + ns + "/to-helm: rolled back at level 1 in " + rollbackTook(t, ctx, m) + ": the old stack serves the traffic",
		"RollbackWatched " + ns + "/to-helm: restored stack Unhealthy",
	}))
	got, _ = get(ctx, m)()
	var watched notify.Message
	g.Expect(json.Unmarshal([]byte(hook.received()[4]), &watched)).To(gomega.Succeed())
	g.Expect("Unhealthy: " + watched.Reason).To(gomega.Equal(got.Status.Rollback.Result))
	var started notify.Message
	g.Expect(json.Unmarshal([]byte(hook.received()[2]), &started)).To(gomega.Succeed())
	g.Expect(started.Action).To(gomega.ContainSubstring(
		"kubectl -n " + ns + ` patch mastodonmigration to-helm --type merge -p '{"spec":{"rollbackLevel":2}}'`))
	eventually(t, seriesOf(ns)).Should(gomega.ContainElement(
		`mastodon_migration_phase{name="to-helm",namespace="` + ns + `",phase="RolledBack"} 1`))
	g.Expect(testutil.ToFloat64(metrics.Rollbacks.WithLabelValues("1", "RollbackLevel"))).To(gomega.Equal(rollbacks + 1))

	// Requeues send nothing again.
	gomega.NewWithT(t).Consistently(hook.kinds).WithTimeout(2 * time.Second).Should(gomega.HaveLen(5))
	payloads := append(hook.received(), slack.received()...)
	g.Expect(slack.received()).NotTo(gomega.BeEmpty())
	for _, p := range payloads {
		for _, secret := range []string{"otp-value-5f2e", "skb-value-91ac", "wh-token-4d1a", "sl-token-77c3"} {
			g.Expect(p).NotTo(gomega.ContainSubstring(secret))
		}
	}

	if err := k8sClient.Delete(ctx, m); err != nil {
		t.Fatal(err)
	}
	eventually(t, seriesOf(ns)).Should(gomega.BeEmpty())
}

// rollbackTook is the rollback's duration as the message states it.
func rollbackTook(t *testing.T, ctx context.Context, m *v1alpha1.MastodonMigration) string {
	got, err := get(ctx, m)()
	if err != nil || got.Status.Rollback == nil || got.Status.Rollback.FinishedAt == nil {
		t.Fatalf("no finished rollback: %v", err)
	}
	rb := got.Status.Rollback
	return rb.FinishedAt.Sub(rb.StartedAt.Time).Round(time.Millisecond).String()
}

func TestANotificationsSecretThatIsMissingIsAWarningEvent(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	m := migration(ns, "to-helm")
	m.Spec.Notifications = &v1alpha1.NotificationsSpec{SecretRef: v1alpha1.LocalObjectReference{Name: "nowhere"}}
	if err := k8sClient.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	eventually(t, eventsFor(ctx, "MastodonMigration", m)).Should(gomega.ContainElement(gomega.And(
		gomega.HaveField("Type", corev1.EventTypeWarning),
		gomega.HaveField("Reason", "NotificationsNotSent"),
		gomega.HaveField("Note", gomega.HavePrefix("Secret nowhere of spec.notifications.secretRef not found; not sent: "+ns+"/to-helm: ")),
	)))
}
