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
	"github.com/mastodon-operator/mastodon-operator/config/argocd"
)

// kstatusOf is what kstatus (Flux, Argo CD, kubectl wait, cli-utils) reads off a migration or
// a rollback of that kind.
func kstatusOf(t *testing.T, obj runtime.Object, kind string) *status.Result {
	t.Helper()
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	res, err := status.Compute(asServed(content, kind))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// asServed is obj as the API server returns it: a status the operator has not written yet is the
// CRD's default, observedGeneration 0 (test/docs proves it on a real API server).
func asServed(obj map[string]any, kind string) *unstructured.Unstructured {
	if st, _ := obj["status"].(map[string]any); len(st) == 0 {
		obj["status"] = map[string]any{"observedGeneration": int64(0)}
	}
	u := &unstructured.Unstructured{Object: obj}
	u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind(kind))
	return u
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

// argoHealth is what Argo CD reads off an object with the health check shipped in config/argocd.
func argoHealth(t *testing.T, obj runtime.Object, kind string) argocd.Health {
	t.Helper()
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := argocd.Evaluate(asServed(u, kind).Object)
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// kstatusAgrees: Argo CD's health says what kstatus says. Suspended is Argo CD's own word for a
// paused object, which kstatus, having none, reads as InProgress.
func kstatusAgrees(k status.Status, health string) bool {
	switch k {
	case status.CurrentStatus:
		return health == "Healthy"
	case status.InProgressStatus:
		return health == "Progressing" || health == "Suspended"
	case status.FailedStatus:
		return health == "Degraded"
	}
	return false
}

// blockedPreflight is the preflight step as the plan declares it, finding what real preflight
// reports as two blocking problems.
func blockedPreflight(r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) step {
	s := r.plan(m)[0]
	s.run = func(context.Context, *v1alpha1.MastodonMigration) (outcome, error) {
		return outcome{state: v1alpha1.StepFailed, message: preflightMessage(v1alpha1.PreflightSummary{Blocks: 2})}, nil
	}
	return s
}

// Each state a migration ends in, or passes through, as the operator's own code writes it, reads
// to kstatus (Flux, kubectl wait) and to Argo CD's health check (config/argocd) as what it is,
// with the summary a person reads.
func TestEveryStateReadsToKstatusAsWhatItIs(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		write     func(r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration)
		phase     v1alpha1.Phase
		want      status.Status
		wantReady bool
		argo      argocd.Health
	}{
		// observedGeneration 0 (the CRD's default) against generation 1: kstatus waits, as Argo
		// CD's check does, for the operator's first status.
		{"no status yet", func(*MastodonMigrationReconciler, *v1alpha1.MastodonMigration) {}, "", status.InProgressStatus, false,
			argocd.Health{Status: "Progressing", Message: "waiting for the operator to write a status"}},
		{"in progress", func(r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			_, _, _ = r.runSteps(ctx, m, r.plan(m))
		}, v1alpha1.PhasePreflight, status.InProgressStatus, false,
			argocd.Health{Status: "Progressing", Message: "Preflight: step Preflight started"}},
		{"paused", func(r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			m.Spec.Paused = true
			_, _, _ = r.runSteps(ctx, m, r.plan(m))
		}, v1alpha1.PhasePending, status.InProgressStatus, false,
			argocd.Health{Status: "Suspended", Message: "paused before step Preflight: set spec.paused to false to go on"}},
		{"preflight blocked", func(r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			steps := []step{blockedPreflight(r, m)}
			for range 2 { // the start, then the checklist
				_, _, _ = r.runSteps(ctx, m, steps)
			}
		}, v1alpha1.PhasePreflight, status.FailedStatus, false,
			argocd.Health{Status: "Degraded", Message: "Preflight: 2 findings: 2 block the migration; see status.preflight"}},
		{"completed", func(r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			stepsDone(r, m)
			_, _ = r.runPlan(ctx, m)
		}, v1alpha1.PhaseCompleted, status.CurrentStatus, true,
			argocd.Health{Status: "Healthy", Message: "Completed: migrated to release mastodon-helm"}},
		{"spec changed after it completed", func(r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			stepsDone(r, m)
			_, _ = r.runPlan(ctx, m)
			m.Generation++
		}, v1alpha1.PhaseCompleted, status.InProgressStatus, true,
			argocd.Health{Status: "Progressing", Message: "the operator has not acted on generation 4 yet"}},
		{"rolled back", func(r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			now := metav1.NowMicro()
			m.Status.Rollback = &v1alpha1.RollbackStatus{Level: 1, Trigger: TriggerAutomatic, Reason: "5xx", StartedAt: &now}
			_, _ = r.rolledBack(m, "rolled back at level 1: the old stack serves the traffic")
		}, v1alpha1.PhaseRolledBack, status.FailedStatus, false,
			argocd.Health{Status: "Degraded", Message: "RolledBack: rolled back at level 1: the old stack serves the traffic"}},
		{"failed", func(r *MastodonMigrationReconciler, m *v1alpha1.MastodonMigration) {
			runs := 0
			steps := []step{failing(&runs)}
			for range 3 { // the start, the failure, and a look after it
				_, _, _ = r.runSteps(ctx, m, steps)
			}
		}, v1alpha1.PhaseFailed, status.FailedStatus, false,
			argocd.Health{Status: "Degraded", Message: "Failed: not ready within 10m0s: waiting for web"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &v1alpha1.MastodonMigration{ObjectMeta: metav1.ObjectMeta{Namespace: "mastodon", Name: "to-helm", Generation: 3,
				UID: "0b5c1e6a-1f7e-4c43-9d6e-6f0c1d2e3f4a"}}
			m.Spec.Release.Name = "mastodon-helm"
			if tc.phase != "" {
				m.Status.Phase = v1alpha1.PhasePending
			}
			tc.write(testReconciler(), m)
			res := kstatusOf(t, m, "MastodonMigration")
			if res.Status != tc.want || m.Status.Phase != tc.phase {
				t.Errorf("phase %s, kstatus %s (%s); want phase %s, kstatus %s", m.Status.Phase, res.Status, res.Message, tc.phase, tc.want)
			}
			hs := argoHealth(t, m, "MastodonMigration")
			if hs != tc.argo {
				t.Errorf("Argo CD reads %+v, want %+v", hs, tc.argo)
			}
			if !kstatusAgrees(res.Status, hs.Status) {
				t.Errorf("Argo CD reads %s where kstatus reads %s", hs.Status, res.Status)
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

// Each state of a MastodonRollback, as its reconciler writes it from the migration's, reads to
// kstatus and to Argo CD's health check alike.
func TestEveryRollbackStateReadsToKstatusAndArgoCDAlike(t *testing.T) {
	rolling := func(m *v1alpha1.MastodonMigration) {
		now := metav1.NowMicro()
		m.Status.Rollback = &v1alpha1.RollbackStatus{Level: 1, Trigger: TriggerMastodonRollback, StartedAt: &now}
		setProgress(&m.Status.Conditions, m.Generation, progressReconciling, ReasonProgressing, "step RollbackTraffic: moving the traffic back")
	}
	for _, tc := range []struct {
		name  string
		write func(r *MastodonRollbackReconciler, rb *v1alpha1.MastodonRollback, m *v1alpha1.MastodonMigration)
		phase v1alpha1.RollbackPhase
		want  status.Status
		argo  argocd.Health
	}{
		// A reconcile that erred before it decided anything: its first status, and no more.
		{"pending", func(_ *MastodonRollbackReconciler, rb *v1alpha1.MastodonRollback, _ *v1alpha1.MastodonMigration) {
			pending(rb)
		}, v1alpha1.RollbackPending, status.InProgressStatus,
			argocd.Health{Status: "Progressing", Message: "Pending: reading MastodonMigration to-helm"}},
		{"asked", func(r *MastodonRollbackReconciler, rb *v1alpha1.MastodonRollback, m *v1alpha1.MastodonMigration) {
			_, _ = r.requestAndReport(context.Background(), rb, stepRecord(&rb.Status.Steps, StepResolve), m)
		}, v1alpha1.RollbackRunning, status.InProgressStatus,
			argocd.Health{Status: "Progressing", Message: "Running: asked MastodonMigration to-helm for a level 1 rollback"}},
		{"running", func(r *MastodonRollbackReconciler, rb *v1alpha1.MastodonRollback, m *v1alpha1.MastodonMigration) {
			rolling(m)
			_, _ = r.requestAndReport(context.Background(), rb, stepRecord(&rb.Status.Steps, StepResolve), m)
		}, v1alpha1.RollbackRunning, status.InProgressStatus,
			argocd.Health{Status: "Progressing", Message: "Running: step RollbackTraffic: moving the traffic back"}},
		{"succeeded", func(r *MastodonRollbackReconciler, rb *v1alpha1.MastodonRollback, m *v1alpha1.MastodonMigration) {
			rolling(m)
			_, _ = testReconciler().rolledBack(m, "rolled back at level 1: the old stack serves the traffic")
			_, _ = r.requestAndReport(context.Background(), rb, stepRecord(&rb.Status.Steps, StepResolve), m)
		}, v1alpha1.RollbackSucceeded, status.CurrentStatus,
			argocd.Health{Status: "Healthy", Message: "Succeeded: rolled back at level 1: the old stack serves the traffic"}},
		// The migration's rollback stops for a person: not an end, so the rollback stays Running
		// and follows it, but kstatus and Argo CD say someone must act.
		{"waiting on a person", func(r *MastodonRollbackReconciler, rb *v1alpha1.MastodonRollback, m *v1alpha1.MastodonMigration) {
			rolling(m)
			setProgress(&m.Status.Conditions, m.Generation, progressStalled, "RollbackSourceFailed", "the old pods are not ready within 1m0s")
			_, _ = r.requestAndReport(context.Background(), rb, stepRecord(&rb.Status.Steps, StepResolve), m)
		}, v1alpha1.RollbackRunning, status.FailedStatus,
			argocd.Health{Status: "Degraded", Message: "Running: the old pods are not ready within 1m0s"}},
		{"refused", func(r *MastodonRollbackReconciler, rb *v1alpha1.MastodonRollback, _ *v1alpha1.MastodonMigration) {
			_, _ = r.refuse(rb, stepRecord(&rb.Status.Steps, StepResolve), ReasonMigrationMissing,
				"MastodonMigration to-helm not found in namespace mastodon: check spec.migrationRef.name")
		}, v1alpha1.RollbackFailed, status.FailedStatus,
			argocd.Health{Status: "Degraded", Message: "Failed: MastodonMigration to-helm not found in namespace mastodon: check spec.migrationRef.name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &v1alpha1.MastodonMigration{ObjectMeta: metav1.ObjectMeta{Namespace: "mastodon", Name: "to-helm", Generation: 1}}
			rb := &v1alpha1.MastodonRollback{ObjectMeta: metav1.ObjectMeta{Namespace: "mastodon", Name: "back", Generation: 1},
				Spec: v1alpha1.MastodonRollbackSpec{MigrationRef: v1alpha1.LocalObjectReference{Name: "to-helm"}, Level: 1}}
			r := &MastodonRollbackReconciler{Recorder: events.NewFakeRecorder(100)}
			start(stepRecord(&rb.Status.Steps, StepResolve), rb.Generation, metav1.NowMicro())
			tc.write(r, rb, m)
			res := kstatusOf(t, rb, "MastodonRollback")
			if rb.Status.Phase != tc.phase || res.Status != tc.want {
				t.Errorf("phase %s, kstatus %s (%s); want %s, %s", rb.Status.Phase, res.Status, res.Message, tc.phase, tc.want)
			}
			hs := argoHealth(t, rb, "MastodonRollback")
			if hs != tc.argo {
				t.Errorf("Argo CD reads %+v, want %+v", hs, tc.argo)
			}
			if rb.Status.Conditions != nil && !kstatusAgrees(res.Status, hs.Status) {
				t.Errorf("Argo CD reads %s where kstatus reads %s", hs.Status, res.Status)
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
