package controllers

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// kstatusOf is what kstatus (Flux, Argo CD, kubectl wait, cli-utils) reads off a migration.
func kstatusOf(t *testing.T, m *v1alpha1.MastodonMigration) *status.Result {
	t.Helper()
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(m)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: obj}
	u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("MastodonMigration"))
	res, err := status.Compute(u)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func testReconciler() *MastodonMigrationReconciler {
	return &MastodonMigrationReconciler{Recorder: events.NewFakeRecorder(100)}
}

// stepsDone records every step of the migration's plan as succeeded.
func stepsDone(r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
	for _, s := range r.plan(m) {
		m.Status.Steps = append(m.Status.Steps, v1alpha1.StepStatus{Name: s.name, State: v1alpha1.StepSucceeded, Generation: m.Generation})
	}
}

// failing is a step that stops for a person when it fails, as Verify does.
func failing(runs *int) step {
	return step{name: StepVerify, phase: v1alpha1.PhaseVerifying, timeout: unlimited, effect: readOnly, onFailure: stopForPerson,
		run: func(context.Context, *v1alpha1.MastodonMigration) (outcome, error) {
			*runs++
			if *runs == 1 {
				return outcome{state: v1alpha1.StepFailed, message: "not ready within 10m0s: waiting for web"}, nil
			}
			return outcome{state: v1alpha1.StepSucceeded, message: "ready now"}, nil
		}}
}

// Each state a migration ends in, or passes through, as the operator's own code writes it,
// reads to kstatus as what it is.
func TestEveryStateReadsToKstatusAsWhatItIs(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		write     func(r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration)
		phase     v1alpha1.Phase
		want      status.Status
		wantReady bool
	}{
		{"in progress", func(r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			_, _, _ = r.runSteps(ctx, m, r.plan(m))
		}, v1alpha1.PhasePreflight, status.InProgressStatus, false},
		{"paused", func(r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			m.Spec.Paused = true
			_, _, _ = r.runSteps(ctx, m, r.plan(m))
		}, v1alpha1.PhasePending, status.InProgressStatus, false},
		{"completed", func(r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			stepsDone(r, m)
			_, _ = r.runPlan(ctx, m)
		}, v1alpha1.PhaseCompleted, status.CurrentStatus, true},
		{"rolled back", func(r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			now := metav1.NowMicro()
			m.Status.Rollback = &v1alpha1.RollbackStatus{Level: 1, Trigger: TriggerAutomatic, Reason: "5xx", StartedAt: &now}
			_, _ = r.rolledBack(m, "rolled back at level 1: the old stack serves the traffic")
		}, v1alpha1.PhaseRolledBack, status.FailedStatus, false},
		{"failed", func(r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			runs := 0
			steps := []step{failing(&runs)}
			for range 3 { // the start, the failure, and a look after it
				_, _, _ = r.runSteps(ctx, m, steps)
			}
		}, v1alpha1.PhaseFailed, status.FailedStatus, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &v1alpha1.MastodonMigration{ObjectMeta: metav1.ObjectMeta{Namespace: "mastodon", Name: "to-helm", Generation: 3,
				UID: "0b5c1e6a-1f7e-4c43-9d6e-6f0c1d2e3f4a"}}
			m.Status.Phase = v1alpha1.PhasePending
			tc.write(testReconciler(), m)
			res := kstatusOf(t, m)
			if res.Status != tc.want || m.Status.Phase != tc.phase {
				t.Errorf("phase %s, kstatus %s (%s); want phase %s, kstatus %s", m.Status.Phase, res.Status, res.Message, tc.phase, tc.want)
			}
			// The three conditions agree: at most one is True, and Ready only when Current.
			trues := 0
			for _, c := range m.Status.Conditions {
				if c.Status == metav1.ConditionTrue {
					trues++
				}
				if c.Type == ConditionReady && (c.Status == metav1.ConditionTrue) != tc.wantReady {
					t.Errorf("Ready is %s", c.Status)
				}
			}
			if trues > 1 {
				t.Errorf("%d conditions True: %+v", trues, m.Status.Conditions)
			}
		})
	}
}

// A step whose failure stands is not run again for its generation, however the world changes:
// the migration stays Failed, saying what to do. A spec change runs it again, with its whole
// time-out.
func TestAFailureThatStandsIsNotRunAgainUntilTheSpecChanges(t *testing.T) {
	ctx := context.Background()
	r := testReconciler()
	m := &v1alpha1.MastodonMigration{ObjectMeta: metav1.ObjectMeta{Name: "to-helm", Generation: 1}}
	runs := 0
	steps := []step{failing(&runs)}
	for range 5 {
		if _, done, err := r.runSteps(ctx, m, steps); done || err != nil {
			t.Fatalf("done %v, err %v", done, err)
		}
	}
	rec := m.Status.Steps[0]
	if runs != 1 || rec.State != v1alpha1.StepFailed || m.Status.Phase != v1alpha1.PhaseFailed {
		t.Fatalf("ran %d times, step %s, phase %s; want one run, Failed, Failed", runs, rec.State, m.Status.Phase)
	}
	failedAt := rec.StartedAt
	m.Generation = 2
	for range 2 { // the start, then the run
		_, _, _ = r.runSteps(ctx, m, steps)
	}
	if rec := m.Status.Steps[0]; runs != 2 || rec.State != v1alpha1.StepSucceeded || !strings.Contains(rec.Message, "ready now") {
		t.Fatalf("after a spec change: ran %d times, step %+v", runs, rec)
	}
	if m.Status.Steps[0].StartedAt.Equal(failedAt) {
		t.Error("the step tried again after a spec change kept the failed attempt's start: its time-out would be over at once")
	}
}
