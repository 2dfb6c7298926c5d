package metrics

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

func observing(ns, name string) *v1alpha1.MastodonMigration {
	started := metav1.NewMicroTime(time.Unix(1700000000, 500000000))
	return &v1alpha1.MastodonMigration{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Status: v1alpha1.MastodonMigrationStatus{
			Phase: v1alpha1.PhaseObserving,
			Conditions: []metav1.Condition{
				{Type: "Stalled", Status: metav1.ConditionFalse}, {Type: "Reconciling", Status: metav1.ConditionTrue},
			},
			Steps: []v1alpha1.StepStatus{{Name: "Observe", State: v1alpha1.StepRunning, StartedAt: &started}},
			Analysis: &v1alpha1.AnalysisStatus{
				Verdict: "Breaching", ErrorRate: "12.50%", LatencyRatio: "2.40", QueueLatency: "1m30s",
				Breaches: []v1alpha1.Breach{
					{Severity: "High", Metric: "errorRate"}, {Severity: "High", Metric: "latencyRatio"}, {Severity: "Medium", Metric: "errorRate"},
				},
			},
			PreflightSummary: &v1alpha1.PreflightSummary{Changes: 2, Informational: 5},
		},
	}
}

// gathered is the registry's exposition of a namespace's series, as the metrics endpoint serves
// it, sorted.
func gathered(t *testing.T, ns string) string {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	for _, f := range families {
		if _, err := expfmt.MetricFamilyToText(&text, f); err != nil {
			t.Fatal(err)
		}
	}
	var keep []string
	for _, line := range strings.Split(text.String(), "\n") {
		if strings.Contains(line, `namespace="`+ns+`"`) {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

func TestRecordExportsTheStatusAndForgetDeletesIt(t *testing.T) {
	m := observing("metrics-a", "to-helm")
	Record(&v1alpha1.MastodonMigrationStatus{}, m, true)
	want := strings.Join([]string{
		`mastodon_migration_analysis_breaches{name="to-helm",namespace="metrics-a",threshold="High"} 2`,
		`mastodon_migration_analysis_breaches{name="to-helm",namespace="metrics-a",threshold="Medium"} 1`,
		`mastodon_migration_analysis_error_rate{name="to-helm",namespace="metrics-a"} 0.125`,
		`mastodon_migration_analysis_latency_ratio{name="to-helm",namespace="metrics-a"} 2.4`,
		`mastodon_migration_analysis_sidekiq_queue_latency_seconds{name="to-helm",namespace="metrics-a"} 90`,
		`mastodon_migration_phase{name="to-helm",namespace="metrics-a",phase="Observing"} 1`,
		`mastodon_migration_preflight_findings{class="Blocks",name="to-helm",namespace="metrics-a"} 0`,
		`mastodon_migration_preflight_findings{class="Changes",name="to-helm",namespace="metrics-a"} 2`,
		`mastodon_migration_preflight_findings{class="Informational",name="to-helm",namespace="metrics-a"} 5`,
		`mastodon_migration_running_step_started_timestamp_seconds{name="to-helm",namespace="metrics-a",step="Observe"} 1.7000000005e+09`,
		`mastodon_migration_stalled{name="to-helm",namespace="metrics-a"} 0`,
	}, "\n")
	if got := gathered(t, "metrics-a"); got != want {
		t.Fatalf("series:\n%s\nwant:\n%s", got, want)
	}

	// The migration moves on: the series of its last phase, breaches and running step go, the
	// others take the new values.
	before := m.Status.DeepCopy()
	now := metav1.NewMicroTime(m.Status.Steps[0].StartedAt.Add(42 * time.Second))
	m.Status.Phase = v1alpha1.PhaseCompleted
	m.Status.Steps[0].State, m.Status.Steps[0].FinishedAt = v1alpha1.StepSucceeded, &now
	m.Status.Analysis.Breaches, m.Status.Analysis.ErrorRate = nil, "0.00%"
	Record(before, m, true)
	got := gathered(t, "metrics-a")
	for _, line := range []string{
		`mastodon_migration_phase{name="to-helm",namespace="metrics-a",phase="Completed"} 1`,
		`mastodon_migration_analysis_error_rate{name="to-helm",namespace="metrics-a"} 0`,
	} {
		if !strings.Contains(got, line) {
			t.Errorf("missing %s in\n%s", line, got)
		}
	}
	for _, gone := range []string{`phase="Observing"`, "breaches", "running_step"} {
		if strings.Contains(got, gone) {
			t.Errorf("%s still exported:\n%s", gone, got)
		}
	}

	Forget("metrics-a", "to-helm")
	if got := gathered(t, "metrics-a"); got != "" {
		t.Fatalf("a deleted migration keeps series:\n%s", got)
	}
}

func TestStepDurationsAndRollbacksAreCountedOncePerTransition(t *testing.T) {
	steps := func() float64 {
		return float64(testutil.CollectAndCount(StepDuration))
	}
	count := func(level, trigger string) float64 {
		return testutil.ToFloat64(Rollbacks.WithLabelValues(level, trigger))
	}
	m := observing("metrics-b", "to-helm")
	start := metav1.NewMicroTime(time.Now())
	end := metav1.NewMicroTime(start.Add(3 * time.Second))
	m.Status.Steps = []v1alpha1.StepStatus{{Name: "Verify", State: v1alpha1.StepFailed, StartedAt: &start, FinishedAt: &end}}
	m.Status.Rollback = &v1alpha1.RollbackStatus{Level: 1, Trigger: "Automatic"}
	before := &v1alpha1.MastodonMigrationStatus{}
	rollbacks := count("1", "Automatic")

	// A write that failed counts nothing; the reconcile that writes it counts it.
	Record(before, m, false)
	if got := count("1", "Automatic"); got != rollbacks {
		t.Fatalf("an unwritten rollback was counted: %v", got)
	}
	Record(before, m, true)
	if got := count("1", "Automatic"); got != rollbacks+1 {
		t.Fatalf("rollbacks{1,Automatic} = %v, want %v", got, rollbacks+1)
	}
	hist, err := testutil.CollectAndFormat(StepDuration, expfmt.TypeTextPlain, "mastodon_migration_step_duration_seconds")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		`mastodon_migration_step_duration_seconds_bucket{state="Failed",step="Verify",le="2.5"} 0`,
		`mastodon_migration_step_duration_seconds_bucket{state="Failed",step="Verify",le="5"} 1`,
		`mastodon_migration_step_duration_seconds_sum{state="Failed",step="Verify"} 3`,
	} {
		if !strings.Contains(string(hist), line) {
			t.Errorf("missing %s in\n%s", line, hist)
		}
	}
	series := steps()

	// A requeue that changes nothing counts nothing again.
	again := m.Status.DeepCopy()
	Record(again, m, true)
	if got := count("1", "Automatic"); got != rollbacks+1 {
		t.Fatalf("a requeue counted the rollback again: %v", got)
	}
	if got, err := testutil.CollectAndFormat(StepDuration, expfmt.TypeTextPlain, "mastodon_migration_step_duration_seconds"); err != nil || string(got) != string(hist) {
		t.Fatalf("a requeue observed the step again:\n%s", got)
	}
	// An escalation counts at its level.
	escalated := m.DeepCopy()
	escalated.Status.Rollback.Level = 2
	Record(again, escalated, true)
	if got := count("2", "Automatic"); got != 1 {
		t.Fatalf("rollbacks{2,Automatic} = %v, want 1", got)
	}
	if steps() != series {
		t.Fatalf("step series changed")
	}
	Forget("metrics-b", "to-helm")
}
