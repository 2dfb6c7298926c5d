package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/analysis"
)

func analysisWindow(m *v1alpha1.MastodonMigration) time.Duration {
	return durationOr(m.Spec.Analysis.Window, 30*time.Minute)
}

func analysisInterval(m *v1alpha1.MastodonMigration) time.Duration {
	return durationOr(m.Spec.Analysis.Interval, 30*time.Second)
}

// baselineAttempts is how many intervals the baseline waits for data before the traffic moves
// without one.
const baselineAttempts = 3

// baseline measures the old stack while it still takes the traffic: the new stack's latency is
// judged against it.
func (r *MastodonMigrationReconciler) baseline(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	// The old stack takes the traffic: the probe's instance API must report its version.
	var version string
	if src, err := r.sourceStack(ctx, m); err == nil {
		version, _ = stackVersion(src.web)
	}
	providers, closeAll, err := r.metricProviders(ctx, m, version)
	if err != nil {
		return outcome{}, err
	}
	defer closeAll()
	r.setMetricsCondition(m, len(providers))
	if len(providers) == 0 {
		return outcome{state: v1alpha1.StepSkipped, message: "no metric provider: the new stack will be judged by its readiness alone"}, nil
	}
	now := metav1.Now()
	m.Status.Analysis = nil
	res := measureOnce(ctx, m, providers, now.Time)
	recordAnalysis(m, res, providers, now)
	r.setMetricsCondition(m, len(providers))
	// Only the baseline and the counters stay: the old stack's own breaches are not the new one's.
	a := m.Status.Analysis
	a.Verdict, a.Breaches, a.ErrorRate, a.Latency, a.LatencyRatio, a.QueueLatency = "", nil, "", "", "", ""
	a.JobsSinceBaseline, a.DeadJobsRatio, a.Warnings = nil, "", nil
	a.Baseline = &v1alpha1.Baseline{ErrorRate: formatPercent(res.ErrorRate), Latency: formatDuration(res.Latency),
		Jobs: sidekiqJobs(res.Jobs), MeasuredAt: &now}
	jobs := "Sidekiq not measured"
	if j := res.Jobs; j != nil {
		jobs = fmt.Sprintf("Sidekiq %d processed, %d failed, %d to retry, %d dead", j.Processed, j.Failed, j.Retry, j.Dead)
	}
	if res.ErrorRate == nil && res.Latency == nil {
		msg := "no baseline of the traffic: " + analysis.Describe(res)
		// Sidekiq's counters alone make no baseline while a provider of the traffic may still answer.
		if started := stepStartedAt(m, StepBaseline); started != nil && now.Sub(started.Time) < baselineAttempts*analysisInterval(m) &&
			(res.Jobs == nil || measuresTraffic(m)) {
			return outcome{state: v1alpha1.StepRunning, message: msg + "; measuring again", requeueAfter: analysisInterval(m)}, nil
		}
		if res.Jobs == nil {
			a.Baseline = nil
		}
		r.Recorder.Eventf(m, nil, corev1.EventTypeWarning, "NoBaseline", "Analyze", "%s", eventNote(msg+
			": the traffic moves without one, and the latency ratio is not judged; "+jobs))
		return outcome{state: v1alpha1.StepSucceeded, message: msg + ": the latency ratio will not be judged; " + jobs}, nil
	}
	return outcome{state: v1alpha1.StepSucceeded, message: fmt.Sprintf("old stack before the switch: error rate %s, latency %s; %s",
		orNone(a.Baseline.ErrorRate), orNone(a.Baseline.Latency), jobs)}, nil
}

// measuresTraffic says whether a provider of the error rate and latency is configured: the HTTP
// probe, Prometheus or Cloud Monitoring, or the default probe (no provider named).
func measuresTraffic(m *v1alpha1.MastodonMigration) bool {
	s := m.Spec.Analysis
	return s.HTTP != nil || s.Prometheus != nil || s.CloudMonitoring != nil || s.Sidekiq == nil
}

func orNone(s string) string {
	if s == "" {
		return "not measured"
	}
	return s
}

// observe watches the release for analysis.window after it took the traffic: every interval
// the metric providers measure it and the rollback procedure's thresholds judge it, and every
// Deployment of the release must stay ready. A breach that calls for it, or a stack unready
// for an interval, rolls back at level 1 (spec.rollback.automatic). The window completes only
// on data: a verdict of Pass, every provider answering, nothing breaching.
func (r *MastodonMigrationReconciler) observe(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	if m.Status.Traffic == nil || m.Status.Traffic.SwitchedAt == nil {
		return outcome{}, fmt.Errorf("no traffic switch recorded in status.traffic")
	}
	switchedAt := m.Status.Traffic.SwitchedAt.Time
	deployments, err := r.releaseDeployments(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	version, _ := stackVersion(deployments["web"])
	judged, err := r.judge(ctx, m, switchedAt, notRolledOut(deployments), "the new stack", version)
	if err != nil {
		return outcome{}, err
	}
	if judged.acting != "" {
		// The step's failure meaning (rollBack) rolls back or holds.
		return outcome{state: v1alpha1.StepFailed, message: judged.acting}, nil
	}
	window := analysisWindow(m)
	elapsed := time.Since(switchedAt)
	if elapsed < window {
		return outcome{state: v1alpha1.StepRunning, message: fmt.Sprintf("watching the new stack: %s of %s; %s",
			elapsed.Round(time.Second), window, judged.summary), requeueAfter: min(judged.next, window-elapsed)}, nil
	}
	if !judged.conclusive {
		return outcome{state: v1alpha1.StepRunning, message: fmt.Sprintf("the %s window is over but the verdict is not a pass: %s",
			window, judged.summary), requeueAfter: judged.next}, nil
	}
	return outcome{state: v1alpha1.StepSucceeded, message: fmt.Sprintf("watched for %s after the switch: %s", window, judged.summary)}, nil
}

// judgement is what one look at a stack concluded.
type judgement struct {
	// acting says why the stack must be rolled back; empty when it need not.
	acting string
	// conclusive is a pass on data: ready, every provider answered, nothing breaching.
	conclusive bool
	summary    string
	// next is when to look again.
	next time.Duration
}

// judge measures a stack once an interval (since, the moment it took the traffic, starts the
// first), records the measurement in status.analysis with an Event on each change of verdict,
// and judges it together with its readiness (unready lists the Deployments that are not). The
// stack runs Mastodon version (empty: not known), which its instance API must report.
func (r *MastodonMigrationReconciler) judge(ctx context.Context, m *v1alpha1.MastodonMigration, since time.Time, unready []string, what, version string) (judgement, error) {
	now := metav1.Now()
	interval := analysisInterval(m)
	a := m.Status.Analysis
	// The first measurement is due an interval after the stack took the traffic, when the
	// providers' windows hold only its requests; then one every interval.
	next := interval - now.Sub(since)
	// Status keeps whole seconds: a measurement in the second of the switch may be from before it.
	if a != nil && a.LastMeasuredAt != nil && a.LastMeasuredAt.Time.After(since) {
		next = interval - now.Sub(a.LastMeasuredAt.Time)
	}
	var res *analysis.Result
	if next <= 0 {
		providers, closeAll, err := r.metricProviders(ctx, m, version)
		if err != nil {
			return judgement{}, err
		}
		defer closeAll()
		got := measureOnce(ctx, m, providers, now.Time)
		verdictChanged := recordAnalysis(m, got, providers, now)
		r.setMetricsCondition(m, len(providers))
		if verdictChanged {
			typ := corev1.EventTypeWarning
			if got.Verdict == analysis.Pass {
				typ = corev1.EventTypeNormal
			}
			r.Recorder.Eventf(m, nil, typ, "Analysis"+string(got.Verdict), "Analyze", "%s", eventNote(what+": "+analysis.Describe(got)))
		}
		res, next = &got, interval
	}
	if m.Status.Analysis == nil {
		m.Status.Analysis = &v1alpha1.AnalysisStatus{}
	}
	a = m.Status.Analysis
	j := judgement{next: next, summary: "metrics: " + describeStatus(a)}
	if a.LastMeasuredAt == nil || !a.LastMeasuredAt.Time.After(since) {
		j.summary = "first measurement at " + now.Add(next).UTC().Format(time.TimeOnly)
	}
	if len(unready) > 0 {
		if a.UnhealthySince == nil {
			a.UnhealthySince = &now
		}
		a.Verdict = VerdictUnhealthy
		lasted := now.Sub(a.UnhealthySince.Time)
		msg := fmt.Sprintf("%s is not ready: %s", what, strings.Join(unready, "; "))
		// A rollout passes through not-ready states for moments (a scale, an HPA): act only
		// once it has lasted an interval.
		if lasted >= interval {
			j.acting = fmt.Sprintf("%s, for %s", msg, lasted.Round(time.Second))
			return j, nil
		}
		j.summary = fmt.Sprintf("%s (for %s; acting after %s)", msg, lasted.Round(time.Second), interval)
		j.next = min(j.next, interval-lasted)
		return j, nil
	}
	a.UnhealthySince = nil
	if res != nil && res.Acting != nil {
		j.acting = analysis.Describe(*res)
		return j, nil
	}
	down := unavailableProviders(a)
	j.conclusive = len(down) == 0 && len(a.Breaches) == 0 && (a.Verdict == VerdictPass || len(a.Providers) == 0)
	if len(a.Providers) == 0 {
		j.summary = "every Deployment ready (no metric provider)"
	}
	return j, nil
}

// describeStatus sums up status.analysis for a step message.
func describeStatus(a *v1alpha1.AnalysisStatus) string {
	if a == nil {
		return "not measured yet"
	}
	parts := []string{"verdict " + a.Verdict}
	if a.ErrorRate != "" {
		parts = append(parts, "error rate "+a.ErrorRate)
	}
	if a.LatencyRatio != "" {
		parts = append(parts, "latency "+a.LatencyRatio+"x baseline")
	}
	if a.QueueLatency != "" {
		parts = append(parts, "oldest job waiting "+a.QueueLatency)
	}
	if a.DeadJobsRatio != "" {
		parts = append(parts, "dead jobs "+a.DeadJobsRatio+" of processed")
	}
	parts = append(parts, a.Warnings...)
	for _, b := range a.Breaches {
		parts = append(parts, fmt.Sprintf("%s %s %s > %s since %s", b.Severity, b.Metric, b.Value, b.Threshold,
			b.Since.UTC().Format(time.TimeOnly)))
	}
	if down := unavailableProviders(a); len(down) > 0 {
		parts = append(parts, "no data from "+strings.Join(down, "; "))
	}
	for _, p := range a.Providers {
		if p.Available && p.Message != "measured" {
			parts = append(parts, p.Name+": "+p.Message)
		}
	}
	return strings.Join(parts, ", ")
}

// automaticRollback reports whether the operator may roll back by itself (spec.rollback.automatic,
// default true; maxAutomaticLevel is at least 1 by validation).
func automaticRollback(m *v1alpha1.MastodonMigration) bool {
	return m.Spec.Rollback.Automatic == nil || *m.Spec.Rollback.Automatic
}
