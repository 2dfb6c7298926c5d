package notify

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

var now = time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)

func migration(change func(st *v1alpha1.MastodonMigrationStatus)) *v1alpha1.MastodonMigration {
	m := &v1alpha1.MastodonMigration{ObjectMeta: metav1.ObjectMeta{Namespace: "mastodon", Name: "to-helm"}}
	m.Status.Phase = v1alpha1.PhaseObserving
	change(&m.Status)
	return m
}

// lines are the messages as a person reads them: severity, what, why, and what to do.
func lines(msgs []Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, strings.Join([]string{string(m.Kind), string(m.Severity), m.Summary, m.Reason, m.Action}, " | "))
	}
	return out
}

func TestChangesAreTheTransitionsOnly(t *testing.T) {
	started := metav1.NewMicroTime(now.Add(-1500 * time.Millisecond))
	finished := metav1.NewMicroTime(now)
	since := metav1.NewTime(now.Add(-time.Minute))
	breach := v1alpha1.Breach{Severity: "Critical", Metric: "errorRate", Value: "80.00%", Threshold: "50.00%", Since: since}
	rolledBack := func(st *v1alpha1.MastodonMigrationStatus) {
		st.Phase = v1alpha1.PhaseRolledBack
		st.Rollback = &v1alpha1.RollbackStatus{Level: 1, Trigger: "Automatic", Reason: "analysis: critical",
			StartedAt: &started, FinishedAt: &finished, Breaches: []v1alpha1.Breach{breach}}
	}
	cases := []struct {
		name          string
		before, after *v1alpha1.MastodonMigration
		want          []string
	}{
		{"a requeue that changes nothing", migration(rolledBack), migration(rolledBack), nil},
		{"a phase change names the step that ended",
			migration(func(st *v1alpha1.MastodonMigrationStatus) { st.Phase = v1alpha1.PhaseShiftingTraffic }),
			migration(func(st *v1alpha1.MastodonMigrationStatus) {
				st.Steps = []v1alpha1.StepStatus{{Name: "ShiftTraffic", State: v1alpha1.StepSucceeded, FinishedAt: &finished,
					Message: "2 Services point at the release"}}
			}),
			[]string{"PhaseChanged | info | mastodon/to-helm: phase ShiftingTraffic -> Observing | ShiftTraffic Succeeded: 2 Services point at the release | " +
				`to move the traffic back: kubectl -n mastodon patch mastodonmigration to-helm --type merge -p '{"spec":{"rollbackLevel":1}}'`}},
		{"findings: the summary and the first three, most serious first",
			migration(func(st *v1alpha1.MastodonMigrationStatus) { st.Phase = v1alpha1.PhasePreflight }),
			migration(func(st *v1alpha1.MastodonMigrationStatus) {
				st.Phase = v1alpha1.PhasePreflight
				st.PreflightSummary = &v1alpha1.PreflightSummary{Blocks: 1, Changes: 1, Informational: 2}
				st.Preflight = []v1alpha1.Finding{
					{Check: "SourceDeployments", Object: "Deployment/mastodon-web", Message: "not found"},
					{Check: "EnvParity", Class: v1alpha1.FindingChanges, Object: "web/MALLOC_ARENA_MAX", Message: "2 -> unset"},
					{Check: "EnvParity", Class: v1alpha1.FindingInformational, Object: "web/A", Message: "a"},
					{Check: "EnvParity", Class: v1alpha1.FindingInformational, Object: "web/B", Message: "b"},
				}
			}),
			[]string{"PreflightFindings | warning | mastodon/to-helm: preflight found 1 blocking, 1 changing, 2 informational | " +
				"[Blocks] SourceDeployments Deployment/mastodon-web: not found; [Changes] EnvParity web/MALLOC_ARENA_MAX: 2 -> unset; " +
				"[Informational] EnvParity web/A: a | " +
				"fix what blocks, and preflight runs again: kubectl -n mastodon get mastodonmigration to-helm -o jsonpath='{.status.preflight}'"}},
		{"a breach once, when it appears",
			migration(func(st *v1alpha1.MastodonMigrationStatus) { st.Analysis = &v1alpha1.AnalysisStatus{} }),
			migration(func(st *v1alpha1.MastodonMigrationStatus) {
				st.Analysis = &v1alpha1.AnalysisStatus{Breaches: []v1alpha1.Breach{breach}}
			}),
			[]string{"AnalysisBreach | critical | mastodon/to-helm: analysis breach: Critical errorRate | " +
				"measured 80.00%, threshold 50.00%, since 2026-12-01T02:59:00Z | " +
				`to move the traffic back now: kubectl -n mastodon patch mastodonmigration to-helm --type merge -p '{"spec":{"rollbackLevel":1}}'`}},
		{"the same breach measured again",
			migration(func(st *v1alpha1.MastodonMigrationStatus) {
				st.Analysis = &v1alpha1.AnalysisStatus{Breaches: []v1alpha1.Breach{breach}}
			}),
			migration(func(st *v1alpha1.MastodonMigrationStatus) {
				b := breach
				b.Value = "90.00%"
				st.Analysis = &v1alpha1.AnalysisStatus{Breaches: []v1alpha1.Breach{b}}
			}), nil},
		{"a level 1 rollback that started and ended in one reconcile",
			migration(func(st *v1alpha1.MastodonMigrationStatus) {}),
			migration(rolledBack),
			[]string{
				"RollbackStarted | critical | mastodon/to-helm: rolling back at level 1 (Automatic) | " +
					"analysis: critical; Critical errorRate 80.00% (threshold 50.00%) | kubectl -n mastodon describe mastodonmigration to-helm to follow its steps; " +
					`to also remove the release and restore every object: kubectl -n mastodon patch mastodonmigration to-helm --type merge -p '{"spec":{"rollbackLevel":2}}'`,
				"RollbackFinished | warning | mastodon/to-helm: rolled back at level 1 in 1.5s: the old stack serves the traffic | analysis: critical | " +
					"the release stays for inspection; a new MastodonMigration starts the migration again",
			}},
		{"RollingBack after the rollback was recorded",
			migration(func(st *v1alpha1.MastodonMigrationStatus) {
				st.Rollback = &v1alpha1.RollbackStatus{Level: 1, Trigger: "Automatic", StartedAt: &started}
			}),
			migration(func(st *v1alpha1.MastodonMigrationStatus) {
				st.Phase = v1alpha1.PhaseRollingBack
				st.Rollback = &v1alpha1.RollbackStatus{Level: 1, Trigger: "Automatic", StartedAt: &started}
			}), nil},
		{"the watch of the restored stack",
			migration(func(st *v1alpha1.MastodonMigrationStatus) {
				rolledBack(st)
				st.Rollback.Result = "Watching until 03:30"
			}),
			migration(func(st *v1alpha1.MastodonMigrationStatus) {
				rolledBack(st)
				st.Rollback.Result = "Unhealthy: errorRate 60.00% after the rollback"
			}),
			[]string{"RollbackWatched | critical | mastodon/to-helm: restored stack Unhealthy | errorRate 60.00% after the rollback | " +
				"the restored stack misbehaves too: kubectl -n mastodon describe mastodonmigration to-helm; " +
				`level 2: kubectl -n mastodon patch mastodonmigration to-helm --type merge -p '{"spec":{"rollbackLevel":2}}'`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := lines(Changes(c.before, c.after, now))
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

func TestAReasonIsCutForAPhone(t *testing.T) {
	long := strings.Repeat("é", 2000)
	msgs := Changes(migration(func(st *v1alpha1.MastodonMigrationStatus) {}), migration(func(st *v1alpha1.MastodonMigrationStatus) {
		st.Phase = v1alpha1.PhaseFailed
		st.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionFalse, Message: long}}
	}), now)
	if len(msgs) != 1 || len(msgs[0].Reason) > maxText+len("…") || !strings.HasSuffix(msgs[0].Reason, "é…") {
		t.Fatalf("reason of %d bytes: %q", len(msgs[0].Reason), msgs[0].Reason[len(msgs[0].Reason)-10:])
	}
}
