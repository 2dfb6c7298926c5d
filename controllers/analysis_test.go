package controllers

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/analysis"
	"github.com/mastodon-operator/mastodon-operator/internal/analysis/httpprobe"
	"github.com/mastodon-operator/mastodon-operator/internal/analysis/prometheus"
)

// TestTooFewRequestsShowInStatus: a night's handful of requests, one of them a 502, is recorded
// as Inconclusive with how many requests there were, not as a 33% error rate; the probe's last
// failure is named beside it.
func TestTooFewRequestsShowInStatus(t *testing.T) {
	prom, err := prometheus.New(prometheus.Config{Address: "http://prometheus.monitoring:9090"})
	if err != nil {
		t.Fatal(err)
	}
	providers := []analysis.Provider{prom, httpprobe.New("https://example.social/health", 5, time.Second, nil)}
	m := &v1alpha1.MastodonMigration{Spec: v1alpha1.MastodonMigrationSpec{Analysis: v1alpha1.AnalysisSpec{MinRequests: new(int32(50))}}}
	now := metav1.Now()
	third, none := 1.0/3, 0.0
	res := analysis.Evaluate(thresholds(m), baselineOf(m), []analysis.Measurement{
		{Provider: "prometheus", ErrorRate: &third, Requests: 3},
		{Provider: "http", ErrorRate: &none, Requests: 6, OwnRequests: true,
			Failure: "GET https://example.social/api/v2/instance answered version 4.5.0, want 4.6.2: the old stack answered?"},
	}, nil, stateOf(m), now.Time)
	recordAnalysis(m, res, providers, now)

	a := m.Status.Analysis
	if a.Verdict != "Inconclusive" || len(a.Breaches) > 0 {
		t.Fatalf("verdict %s, breaches %v; want Inconclusive without a breach", a.Verdict, a.Breaches)
	}
	want := map[string]string{
		"prometheus": "too few requests to judge: 3, fewer than analysis.minRequests (50)",
		"http":       "measured; last failure: GET https://example.social/api/v2/instance answered version 4.5.0, want 4.6.2: the old stack answered?",
	}
	for _, p := range a.Providers {
		if !p.Available || p.Message != want[p.Name] {
			t.Errorf("provider %s: available %v, %q; want %q", p.Name, p.Available, p.Message, want[p.Name])
		}
	}
	if got := describeStatus(a); !strings.HasPrefix(got, "verdict Inconclusive, error rate 0.00%") ||
		!strings.Contains(got, "prometheus: too few requests to judge: 3") {
		t.Fatalf("step message %q", got)
	}
}
