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

// TestSidekiqFailuresShowInStatus: the baseline's Sidekiq counters in status are what the new
// stack's failures count from; 2% of the jobs dead since is a high breach, written as a percent,
// a queue 45s behind a warning beside it, and both survive the round trip through status.
func TestSidekiqFailuresShowInStatus(t *testing.T) {
	m := &v1alpha1.MastodonMigration{}
	m.Status.Analysis = &v1alpha1.AnalysisStatus{Baseline: &v1alpha1.Baseline{
		Jobs: &v1alpha1.SidekiqJobs{Processed: 1_000_000, Failed: 3000, Retry: 40, Dead: 9000}}}
	measure := func(at time.Time, oldest time.Duration, processed, failed, retry, dead int64) analysis.Result {
		enqueued := int64(12)
		res := analysis.Evaluate(thresholds(m), baselineOf(m), []analysis.Measurement{{Provider: "sidekiq", Enqueued: &enqueued,
			QueueLatency: &oldest, Processed: &processed, Failed: &failed, Retry: &retry, Dead: &dead}}, nil, stateOf(m), at)
		recordAnalysis(m, res, nil, metav1.NewTime(at))
		return res
	}
	start := time.Now().Truncate(time.Second)
	measure(start, 45*time.Second, 1_001_000, 3030, 52, 9020)
	a := m.Status.Analysis
	if a.Verdict != "Breaching" || len(a.Breaches) != 1 {
		t.Fatalf("verdict %s, breaches %+v; want one breach", a.Verdict, a.Breaches)
	}
	if b := a.Breaches[0]; b.Severity != "High" || b.Metric != analysis.MetricDeadJobsRatio || b.Value != "2.00%" ||
		b.Threshold != "1.00%" || b.For != "15m0s" {
		t.Fatalf("breach %+v; want High deadJobsRatio 2.00%% > 1.00%% for 15m", b)
	}
	if j := a.JobsSinceBaseline; j == nil || *j != (v1alpha1.SidekiqJobs{Processed: 1000, Failed: 30, Retry: 12, Dead: 20}) ||
		a.DeadJobsRatio != "2.00%" {
		t.Fatalf("since the baseline %+v, dead %s", a.JobsSinceBaseline, a.DeadJobsRatio)
	}
	if len(a.Warnings) != 1 || !strings.HasPrefix(a.Warnings[0], "oldest Sidekiq job waiting 45s > 30s (warning") {
		t.Fatalf("warnings %q", a.Warnings)
	}
	if got := describeStatus(a); !strings.Contains(got, "High deadJobsRatio 2.00% > 1.00%") || !strings.Contains(got, "oldest Sidekiq job waiting 45s > 30s") {
		t.Fatalf("step message %q", got)
	}

	// 15 minutes on, the baseline still in status: the breach's run acts.
	res := measure(start.Add(15*time.Minute), 3*time.Minute, 1_010_000, 3300, 60, 9300)
	if res.Acting == nil || res.Acting.Metric != analysis.MetricDeadJobsRatio {
		t.Fatalf("acting %+v; want the dead jobs ratio: %s", res.Acting, analysis.Describe(res))
	}
	if q := m.Status.Analysis.Breaches[1]; q.Metric != analysis.MetricQueueLatency || q.Value != "3m0s" || q.Threshold != "2m0s" || q.For != "10m0s" {
		t.Fatalf("queue latency breach %+v", q)
	}

	// The thresholds come from the spec.
	m.Spec.Analysis.Thresholds.High.DeadJobsRatio = "0.05"
	m.Spec.Analysis.Thresholds.High.QueueLatency = &metav1.Duration{Duration: 5 * time.Minute}
	m.Spec.Analysis.Thresholds.Warning.QueueLatency = &metav1.Duration{}
	th := thresholds(m)
	if th.HighDeadJobsRatio != 0.05 || th.HighQueueLatency != 5*time.Minute || th.HighQueueLatencyFor != 10*time.Minute || th.WarningQueueLatency != 0 {
		t.Fatalf("thresholds %+v", th)
	}
}

// TestRollbackMessagesNameTheMigratedSchema: after the release's hooks migrated the database
// (status.schema), levels 1 and 2 say that the old code runs on the new schema, level 3 that the
// backup brings the old one back; without a migration the message is as it was.
func TestRollbackMessagesNameTheMigratedSchema(t *testing.T) {
	m := &v1alpha1.MastodonMigration{}
	const msg = "rolled back at level 2: the old stack serves the traffic"
	if got := withSchema(msg, m, 2); got != msg {
		t.Fatalf("no schema migrated: %q", got)
	}
	m.Status.Schema = &v1alpha1.SchemaStatus{From: "v4.5.3", Version: "v4.6.2",
		MigratedAt: metav1.NewTime(time.Date(2026, 12, 1, 3, 4, 5, 0, time.UTC))}
	for level, want := range map[int32]string{
		1: "rolled back at level 2: the old stack serves the traffic; the old code (Mastodon v4.5.3) now runs on the database schema migrated to v4.6.2 at 03:04:05, which level 1 does not undo; level 3 restores the backup and the old schema, losing every write since",
		2: "rolled back at level 2: the old stack serves the traffic; the old code (Mastodon v4.5.3) now runs on the database schema migrated to v4.6.2 at 03:04:05, which level 2 does not undo; level 3 restores the backup and the old schema, losing every write since",
		3: "rolled back at level 2: the old stack serves the traffic; the database backup from before the migration to v4.6.2 brings back the schema of Mastodon v4.5.3",
	} {
		if got := withSchema(msg, m, level); got != want {
			t.Errorf("level %d:\n got  %q\n want %q", level, got, want)
		}
	}
}
