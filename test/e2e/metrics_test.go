package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/notify"
	"github.com/mastodon-operator/mastodon-operator/test/harness"
)

// scrape reads the operator's metrics endpoint as Prometheus does: name -> "label=value,..." -> value.
func scrape(url string) (map[string]map[string]float64, error) {
	return scrapeAs(http.DefaultClient, url, "")
}

// scrapeAs is scrape through c, with a bearer token unless it is empty.
func scrapeAs(c *http.Client, url, token string) (map[string]map[string]float64, error) {
	resp, err := getMetrics(c, url, token)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]float64{}
	for name, f := range families {
		out[name] = map[string]float64{}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			out[name][strings.Join(labels, ",")] = value(f.GetType(), m)
		}
	}
	return out, nil
}

// getMetrics sends GET url through c, with a bearer token unless it is empty.
func getMetrics(c *http.Client, url, token string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return c.Do(req)
}

func value(t dto.MetricType, m *dto.Metric) float64 {
	switch t {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	default:
		return m.GetGauge().GetValue()
	}
}

// agreesWithStatus checks that the endpoint's series of a migration say what its status says now.
func agreesWithStatus(url string, m *v1alpha1.MastodonMigration) func() error {
	return func() error {
		got, err := getMigration(context.Background(), m)()
		if err != nil {
			return err
		}
		series, err := scrape(url)
		if err != nil {
			return err
		}
		of := "name=" + got.Name + ",namespace=" + got.Namespace
		var phases []string
		for labels, v := range series["mastodon_migration_phase"] {
			if strings.HasPrefix(labels, of+",") {
				phases = append(phases, fmt.Sprintf("%s %v", labels, v))
			}
		}
		if want := []string{of + ",phase=" + string(got.Status.Phase) + " 1"}; strings.Join(phases, ";") != want[0] {
			return fmt.Errorf("phase series %v, status says %s", phases, got.Status.Phase)
		}
		stalled := 0.0
		if meta.IsStatusConditionTrue(got.Status.Conditions, "Stalled") {
			stalled = 1
		}
		if v, ok := series["mastodon_migration_stalled"][of]; !ok || v != stalled {
			return fmt.Errorf("stalled %v (%v), status says %v", v, ok, stalled)
		}
		if a := got.Status.Analysis; a != nil && a.ErrorRate != "" {
			want, _ := strconv.ParseFloat(strings.TrimSuffix(a.ErrorRate, "%"), 64)
			if v := series["mastodon_migration_analysis_error_rate"][of]; fmt.Sprintf("%.4f", v) != fmt.Sprintf("%.4f", want/100) {
				return fmt.Errorf("error rate %v, status says %s", v, a.ErrorRate)
			}
		}
		if p := got.Status.PreflightSummary; p != nil {
			if v := series["mastodon_migration_preflight_findings"]["class=Informational,"+of]; v != float64(p.Informational) {
				return fmt.Errorf("informational findings %v, status says %d", v, p.Informational)
			}
		}
		return nil
	}
}

// webhook is a local receiver of the operator's JSON notifications.
type webhook struct {
	*httptest.Server
	mu   sync.Mutex
	msgs []notify.Message
	raw  []string
}

func newWebhook(t *testing.T) *webhook {
	w := &webhook{}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m notify.Message
		if err := json.Unmarshal(body, &m); err != nil {
			rw.WriteHeader(http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		w.msgs, w.raw = append(w.msgs, m), append(w.raw, string(body))
		w.mu.Unlock()
	}))
	t.Cleanup(w.Close)
	return w
}

func (w *webhook) summaries() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, m := range w.msgs {
		out = append(out, string(m.Kind)+" "+m.Summary)
	}
	return out
}

// TestTheMetricsEndpointAndTheWebhookFollowAnAutomaticRollback scrapes the operator's metrics
// endpoint through a migration that the analysis rolls back: at each point the series say what
// status says, and the rollback is counted once. The webhook configured from a Secret gets each
// transition once, with why and the command to act, and no value of any Secret of the stack.
func TestTheMetricsEndpointAndTheWebhookFollowAnAutomaticRollback(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-metrics"
	path := "/probe/" + ns
	if err := operator.Stop(); err != nil {
		t.Fatal(err)
	}
	var err error
	if operator, err = h.StartOperatorWith(ctx, harness.OperatorOptions{ServeMetrics: true}); err != nil {
		t.Fatal(err)
	}
	url := operator.MetricsURL
	hook := newWebhook(t)
	automatic := `level=1,trigger=Automatic`
	var before float64
	eventually(t, func() error {
		series, err := scrape(url)
		before = series["mastodon_migration_rollbacks_total"][automatic]
		return err
	}).Should(gomega.Succeed())

	_, _, m := migrateTo(t, ctx, ns, v1alpha1.PhaseObserving, func(m *v1alpha1.MastodonMigration) {
		probed(path, 10*time.Minute)(m)
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mastodon-notify"},
			StringData: map[string]string{notify.KeyWebhookURL: hook.URL + "/hooks/e2e-token-3b9f"}}
		if err := h.Client.Create(ctx, secret); err != nil {
			t.Fatal(err)
		}
		m.Spec.Notifications = &v1alpha1.NotificationsSpec{SecretRef: v1alpha1.LocalObjectReference{Name: secret.Name}}
	})
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Analysis.ErrorRate", "0.00%"))
	eventually(t, agreesWithStatus(url, m)).Should(gomega.Succeed())

	h.Web.Answer(path, http.StatusBadGateway, 0)
	t.Cleanup(func() { h.Web.Answer(path, http.StatusOK, 0) })
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseRolledBack))
	h.Web.Answer(path, http.StatusOK, 0)
	eventually(t, agreesWithStatus(url, m)).Should(gomega.Succeed())
	series, err := scrape(url)
	if err != nil {
		t.Fatal(err)
	}
	g := gomega.NewWithT(t)
	g.Expect(series["mastodon_migration_rollbacks_total"][automatic]).To(gomega.Equal(before+1), "the rollback is counted once")
	g.Expect(series["mastodon_migration_step_duration_seconds"]).To(gomega.HaveKeyWithValue("state=Succeeded,step=Install",
		gomega.BeNumerically(">=", 1)))
	g.Expect(series["mastodon_operator_notifications_total"]).To(gomega.HaveKeyWithValue("receiver=webhook,result=sent",
		gomega.BeNumerically(">=", 5)))
	t.Logf("scraped: phase %v, rollbacks %v, Install steps %v", series["mastodon_migration_phase"]["name=to-helm,namespace="+ns+",phase=RolledBack"],
		series["mastodon_migration_rollbacks_total"][automatic], series["mastodon_migration_step_duration_seconds"]["state=Succeeded,step=Install"])

	of := ns + "/" + m.Name
	eventually(t, hook.summaries).Should(gomega.ContainElements(
		"PhaseChanged "+of+": phase Verifying -> ShiftingTraffic",
		"PhaseChanged "+of+": phase ShiftingTraffic -> Observing",
		"AnalysisBreach "+of+": analysis breach: Critical errorRate",
		"RollbackStarted "+of+": rolling back at level 1 (Automatic)",
	))
	eventually(t, hook.summaries).Should(gomega.ContainElement(gomega.HavePrefix("RollbackFinished " + of + ": rolled back at level 1 in ")))
	gomega.NewWithT(t).Consistently(func() []string {
		seen, dup := map[string]bool{}, []string{}
		for _, s := range hook.summaries() {
			if seen[s] {
				dup = append(dup, s)
			}
			seen[s] = true
		}
		return dup
	}).WithTimeout(3*time.Second).Should(gomega.BeEmpty(), "a requeue sent a message again")
	hook.mu.Lock()
	defer hook.mu.Unlock()
	for _, msg := range hook.msgs {
		if msg.Kind == notify.KindRollback {
			g.Expect(msg.Reason).To(gomega.ContainSubstring("critical"))
			g.Expect(msg.Action).To(gomega.ContainSubstring(notify.RollbackCommand(ns, m.Name, 2)))
		}
		t.Logf("%s | %s | %s", msg.Summary, msg.Reason, msg.Action)
	}
	var secrets corev1.SecretList
	g.Expect(h.Client.List(ctx, &secrets, client.InNamespace(ns))).To(gomega.Succeed())
	checked := 0
	for _, body := range hook.raw {
		g.Expect(body).NotTo(gomega.ContainSubstring("e2e-token-3b9f"), "the webhook URL's token")
	}
	for _, s := range secrets.Items {
		for key, v := range s.Data {
			// Shorter values are names, not credentials (DB_USER: mastodon, SMTP_LOGIN: apikey),
			// and appear in any message about the namespace.
			if len(v) < 10 {
				continue
			}
			checked++
			for _, body := range hook.raw {
				g.Expect(body).NotTo(gomega.ContainSubstring(string(v)), "Secret %s key %s", s.Name, key)
			}
		}
	}
	g.Expect(checked).To(gomega.BeNumerically(">", 3), "the stack's Secrets were checked")
	t.Logf("%d messages, none with any of %d Secret values", len(hook.raw), checked)
}
