package controllers

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// fakeStep is a step whose run answers from a script, by run (0 first), and counts its runs.
type fakeStep struct {
	runs   int
	answer func(run int) (outcome, error)
}

func (f *fakeStep) step(name string, eff effect, onf onFailure, timeout limit) step {
	return step{name: name, phase: v1alpha1.PhaseVerifying, timeout: timeout, effect: eff, onFailure: onf,
		run: func(context.Context, *v1alpha1.MastodonMigration) (outcome, error) {
			f.runs++
			return f.answer(f.runs - 1)
		}}
}

func always(out outcome) func(int) (outcome, error) {
	return func(int) (outcome, error) { return out, nil }
}

// oneMinute is a limit that a test's step has outlived when it started two minutes ago.
var oneMinute = limit{after: func(*v1alpha1.MastodonMigration) time.Duration { return time.Minute }, setting: "spec.test.timeout"}

func engineMigration() *v1alpha1.MastodonMigration {
	m := &v1alpha1.MastodonMigration{ObjectMeta: metav1.ObjectMeta{Namespace: "mastodon", Name: "to-helm", Generation: 1}}
	m.Status.Phase = v1alpha1.PhasePending
	return m
}

// runningSince records a step as Running for the migration's generation since ago.
func runningSince(m *v1alpha1.MastodonMigration, name string, ago time.Duration) {
	started := metav1.NewMicroTime(time.Now().Add(-ago))
	m.Status.Steps = append(m.Status.Steps, v1alpha1.StepStatus{Name: name, State: v1alpha1.StepRunning,
		Generation: m.Generation, StartedAt: &started})
}

func recordOf(m *v1alpha1.MastodonMigration, name string) v1alpha1.StepStatus {
	return *stepRecord(&m.Status.Steps, name)
}

// condition is what `kubectl get -o yaml` shows of a condition: status, reason and message.
func condition(m *v1alpha1.MastodonMigration, typ string) string {
	c := meta.FindStatusCondition(m.Status.Conditions, typ)
	if c == nil {
		return ""
	}
	return string(c.Status) + " " + c.Reason + ": " + c.Message
}

// The engine holds every step to what it declares, whatever the step's own code does: each case
// drives runSteps over fake steps, reconcile by reconcile, and checks what a person sees in
// status.
func TestTheEngineHoldsEachStepToItsDeclaration(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		check func(t *testing.T, r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration)
	}{
		{"a step Running past its timeout fails, naming the timeout", func(t *testing.T, r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			f := &fakeStep{answer: always(outcome{state: v1alpha1.StepRunning, message: "waiting for web"})}
			runningSince(m, "Wait", 2*time.Minute)
			_, _, _ = r.runSteps(ctx, m, []step{f.step("Wait", readOnly, stopForPerson, oneMinute)})
			rec := recordOf(m, "Wait")
			if rec.State != v1alpha1.StepFailed || rec.Message != "not ready within 1m0s (spec.test.timeout): waiting for web" {
				t.Errorf("step %s: %q; want Failed, naming the timeout and what it waited for", rec.State, rec.Message)
			}
			if m.Status.Phase != v1alpha1.PhaseFailed || !strings.HasPrefix(condition(m, ConditionStalled), "True WaitFailed") {
				t.Errorf("phase %s, Stalled %q", m.Status.Phase, condition(m, ConditionStalled))
			}
		}},
		{"a step within its timeout waits, woken at the timeout", func(t *testing.T, r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			f := &fakeStep{answer: always(outcome{state: v1alpha1.StepRunning, message: "waiting for web", requeueAfter: time.Hour})}
			runningSince(m, "Wait", 30*time.Second)
			res, _, _ := r.runSteps(ctx, m, []step{f.step("Wait", readOnly, stopForPerson, oneMinute)})
			if rec := recordOf(m, "Wait"); rec.State != v1alpha1.StepRunning {
				t.Errorf("step %s: %q; want Running", rec.State, rec.Message)
			}
			if res.RequeueAfter <= 0 || res.RequeueAfter > 31*time.Second {
				t.Errorf("looked at again in %s, want at the timeout, in about 30s", res.RequeueAfter)
			}
		}},
		{"a retrying step past its timeout fails and keeps looking, no faster than every 10s", func(t *testing.T, r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			// Pods that go wake no watch: without its requeue the step would never see them gone.
			f := &fakeStep{answer: func(run int) (outcome, error) {
				if run < 2 {
					return outcome{state: v1alpha1.StepRunning, message: "waiting for 1 pod to stop", requeueAfter: 150 * time.Millisecond}, nil
				}
				return outcome{state: v1alpha1.StepSucceeded, message: "no pod is left"}, nil
			}}
			runningSince(m, "Stop", 2*time.Minute)
			for run := range 2 {
				res, _, _ := r.runSteps(ctx, m, []step{f.step("Stop", mutating, retry, oneMinute)})
				if rec := recordOf(m, "Stop"); rec.State != v1alpha1.StepFailed || rec.Message != "not ready within 1m0s (spec.test.timeout): waiting for 1 pod to stop" {
					t.Errorf("look %d: step %s: %q; want Failed, naming the timeout", run, rec.State, rec.Message)
				}
				if res.RequeueAfter != 10*time.Second {
					t.Errorf("look %d: looked at again in %s, want 10s", run, res.RequeueAfter)
				}
			}
			_, _, _ = r.runSteps(ctx, m, []step{f.step("Stop", mutating, retry, oneMinute)})
			if rec := recordOf(m, "Stop"); rec.State != v1alpha1.StepSucceeded {
				t.Errorf("step %s: %q; want Succeeded once the pods are gone", rec.State, rec.Message)
			}
		}},
		{"a step erring past its timeout fails with its last error", func(t *testing.T, r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			f := &fakeStep{answer: func(int) (outcome, error) { return outcome{}, errors.New("connection refused") }}
			runningSince(m, "Wait", 2*time.Minute)
			_, _, err := r.runSteps(ctx, m, []step{f.step("Wait", readOnly, retry, oneMinute)})
			if rec := recordOf(m, "Wait"); err != nil || rec.State != v1alpha1.StepFailed ||
				rec.Message != "not ready within 1m0s (spec.test.timeout): connection refused" {
				t.Errorf("err %v, step %s: %q; want Failed with the error", err, rec.State, rec.Message)
			}
		}},
		{"a step error is Reconciling/Retrying with the error, the step still Running", func(t *testing.T, r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			f := &fakeStep{answer: func(int) (outcome, error) { return outcome{}, errors.New("connection refused") }}
			runningSince(m, "Wait", 0)
			_, _, err := r.runSteps(ctx, m, []step{f.step("Wait", readOnly, retry, oneMinute)})
			if err == nil || !strings.Contains(err.Error(), "connection refused") {
				t.Errorf("err %v, want the step's error for the workqueue's backoff", err)
			}
			if got, want := condition(m, ConditionReconciling), "True Retrying: step Wait: connection refused"; got != want {
				t.Errorf("Reconciling %q, want %q", got, want)
			}
			if rec := recordOf(m, "Wait"); rec.State != v1alpha1.StepRunning || rec.Message != "retrying: connection refused" {
				t.Errorf("step %s: %q", rec.State, rec.Message)
			}
		}},
		{"StopForPerson: phase Failed, Stalled, not run again until the generation changes", func(t *testing.T, r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			f := &fakeStep{answer: always(outcome{state: v1alpha1.StepFailed, message: "release unhealthy"})}
			steps := []step{f.step("Check", readOnly, stopForPerson, unlimited)}
			for range 5 {
				_, _, _ = r.runSteps(ctx, m, steps)
			}
			if f.runs != 1 || m.Status.Phase != v1alpha1.PhaseFailed || condition(m, ConditionStalled) != "True CheckFailed: release unhealthy" {
				t.Errorf("ran %d times, phase %s, Stalled %q; want one run, Failed, Stalled", f.runs, m.Status.Phase, condition(m, ConditionStalled))
			}
			m.Generation = 2
			for range 2 { // the start, then the run
				_, _, _ = r.runSteps(ctx, m, steps)
			}
			if f.runs != 2 {
				t.Errorf("ran %d times after a spec change, want 2", f.runs)
			}
		}},
		{"Retry: looked at again on the next reconcile, Stalled meanwhile", func(t *testing.T, r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			f := &fakeStep{answer: func(run int) (outcome, error) {
				if run == 0 {
					return outcome{state: v1alpha1.StepFailed, message: "2 blocking findings"}, nil
				}
				return outcome{state: v1alpha1.StepSucceeded, message: "fixed"}, nil
			}}
			steps := []step{f.step("Preflight", readOnly, retry, unlimited)}
			for range 2 { // the start, then the failure
				_, _, _ = r.runSteps(ctx, m, steps)
			}
			if m.Status.Phase == v1alpha1.PhaseFailed || condition(m, ConditionStalled) != "True PreflightFailed: 2 blocking findings" {
				t.Errorf("phase %s, Stalled %q; want Stalled on the finding, not Failed", m.Status.Phase, condition(m, ConditionStalled))
			}
			if _, done, _ := r.runSteps(ctx, m, steps); !done || f.runs != 2 {
				t.Errorf("ran %d times, done %v; want a second run that succeeds", f.runs, done)
			}
		}},
		{"RollBack: the rollback starts", func(t *testing.T, r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			f := &fakeStep{answer: always(outcome{state: v1alpha1.StepFailed, message: "error rate 9% over 5%"})}
			runningSince(m, "Watch", 0)
			res, _, _ := r.runSteps(ctx, m, []step{f.step("Watch", readOnly, rollBack, unlimited)})
			rb := m.Status.Rollback
			if rb == nil || rb.Level != 1 || rb.Trigger != TriggerAutomatic || rb.Reason != "error rate 9% over 5%" {
				t.Fatalf("status.rollback %+v; want an automatic level 1 rollback for the failure", rb)
			}
			if level, _, _ := requestedRollback(m, nil); level != 1 || res.RequeueAfter != recordFirst {
				t.Errorf("rollback level %d requested, requeue %s; want level 1 at once", level, res.RequeueAfter)
			}
			if !strings.HasPrefix(condition(m, ConditionReconciling), "True WatchFailed") || m.Status.Phase == v1alpha1.PhaseFailed {
				t.Errorf("phase %s, Reconciling %q: the operator acts on", m.Status.Phase, condition(m, ConditionReconciling))
			}
		}},
		{"RollBack without spec.rollback.automatic: held for a person, told how to roll back", func(t *testing.T, r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			m.Spec.Rollback.Automatic = ptr.To(false)
			f := &fakeStep{answer: always(outcome{state: v1alpha1.StepFailed, message: "error rate 9% over 5%"})}
			runningSince(m, "Watch", 0)
			steps := []step{f.step("Watch", readOnly, rollBack, unlimited)}
			for range 3 {
				_, _, _ = r.runSteps(ctx, m, steps)
			}
			if m.Status.Rollback != nil || f.runs != 1 || m.Status.Phase != v1alpha1.PhaseFailed ||
				!strings.Contains(condition(m, ConditionStalled), rollbackCommand(m)) {
				t.Errorf("rollback %+v, ran %d times, phase %s, Stalled %q; want held once, with the command", m.Status.Rollback, f.runs,
					m.Status.Phase, condition(m, ConditionStalled))
			}
		}},
		{"paused: nothing runs", func(t *testing.T, r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			m.Spec.Paused = true
			runningSince(m, "Wait", 0)
			f := &fakeStep{answer: always(outcome{state: v1alpha1.StepSucceeded})}
			_, done, _ := r.runSteps(ctx, m, []step{f.step("Wait", mutating, retry, unlimited)})
			if f.runs != 0 || done || !strings.HasPrefix(condition(m, ConditionReady), "False Paused") {
				t.Errorf("ran %d times, done %v, Ready %q", f.runs, done, condition(m, ConditionReady))
			}
		}},
		{"a read-only step declared so runs again on a spec change", func(t *testing.T, r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			f := &fakeStep{answer: always(outcome{state: v1alpha1.StepSucceeded, message: "no findings"})}
			look := f.step("Look", readOnly, retry, unlimited)
			look.rerunOnSpecChange = true
			m.Status.Steps = []v1alpha1.StepStatus{{Name: "Look", State: v1alpha1.StepSucceeded, Generation: 1}}
			m.Generation = 2
			for range 2 { // the start, then the run
				_, _, _ = r.runSteps(ctx, m, []step{look})
			}
			if f.runs != 1 || recordOf(m, "Look").Generation != 2 {
				t.Errorf("ran %d times, step %+v; want one run for generation 2", f.runs, recordOf(m, "Look"))
			}
		}},
		{"a mutating step is never run again on a spec change: its plan is refused", func(t *testing.T, r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			f := &fakeStep{answer: always(outcome{state: v1alpha1.StepSucceeded, message: "installed"})}
			install := f.step("Install", mutating, retry, unlimited)
			install.rerunOnSpecChange = true
			m.Status.Steps = []v1alpha1.StepStatus{{Name: "Install", State: v1alpha1.StepSucceeded, Generation: 1}}
			m.Generation = 2
			for range 3 {
				_, _, _ = r.runSteps(ctx, m, []step{install})
			}
			if f.runs != 0 || !strings.HasPrefix(condition(m, ConditionStalled), "True InvalidPlan: step Install changes the cluster") {
				t.Errorf("ran %d times, Stalled %q; want none, the plan refused", f.runs, condition(m, ConditionStalled))
			}
		}},
		{"a step that declares nothing is refused", func(t *testing.T, r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			f := &fakeStep{answer: always(outcome{state: v1alpha1.StepSucceeded})}
			for _, s := range []step{f.step("NoLimit", readOnly, retry, limit{}), f.step("NoEffect", 0, retry, unlimited),
				f.step("NoMeaning", readOnly, 0, unlimited)} {
				for range 2 {
					_, _, _ = r.runSteps(ctx, m, []step{s})
				}
				if f.runs != 0 || !strings.HasPrefix(condition(m, ConditionStalled), "True InvalidPlan: step "+s.name) {
					t.Errorf("%s: ran %d times, Stalled %q; want the plan refused", s.name, f.runs, condition(m, ConditionStalled))
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, testReconciler(), engineMigration()) })
	}
}

// Every plan the operator runs, of every strategy and rollback level, declares for each step its
// limit, its effect and what its failure means, and only read-only steps run again on a spec
// change: the engine would refuse the plan otherwise.
func TestEveryRealPlanDeclaresWhatTheEngineEnforces(t *testing.T) {
	r := testReconciler()
	for _, strategy := range []v1alpha1.Strategy{"", v1alpha1.StrategyBlueGreen, v1alpha1.StrategyInPlace, v1alpha1.StrategyMaintenance} {
		m := engineMigration()
		m.Spec.Strategy = strategy
		plans := map[string][]step{"migration": r.plan(m)}
		for level := int32(1); level <= 3; level++ {
			plans["rollback level "+string(rune('0'+level))] = r.rollbackPlan(m, level)
		}
		for name, steps := range plans {
			if err := checkPlan(steps); err != nil {
				t.Errorf("%q %s plan: %v", strategy, name, err)
			}
			for _, s := range steps {
				if s.timeout.after != nil && s.timeout.after(m) > 0 && s.timeout.setting == "" {
					t.Errorf("%q %s plan: step %s has a limit its failure message cannot name", strategy, name, s.name)
				}
			}
		}
	}
}
