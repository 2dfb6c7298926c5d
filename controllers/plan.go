package controllers

import (
	"context"
	"fmt"
	"time"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// step is one named, idempotent step of a migration. run looks at the world first, acts only
// where the world is not yet as the step wants it, and says how it ended.
type step struct {
	name  string
	phase v1alpha1.Phase
	run   func(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error)
	// rerunOnSpecChange runs a succeeded step again when the spec changes before the next
	// step has started; only steps that change nothing may set it.
	rerunOnSpecChange bool
}

// outcome is how a step ended this time round.
type outcome struct {
	// state is Succeeded or Skipped (go on), Running (waiting; a watch or the requeue wakes it)
	// or Failed (blocked until a person changes something).
	state   v1alpha1.StepState
	message string
	// requeueAfter looks at a waiting or blocked step again even if no watched object changes.
	requeueAfter time.Duration
}

// The names of the steps, as they appear in status.steps.
const (
	StepPreflight      = "Preflight"
	StepValues         = "GenerateValues"
	StepSnapshot       = "Snapshot"
	StepDatabaseBackup = "DatabaseBackup"
	StepInstall        = "Install"
	StepVerify         = "Verify"
	StepShiftTraffic   = "ShiftTraffic"
	StepObserve        = "Observe"
	StepFinish         = "Finish"
	StepStrategy       = "Strategy"
	StepRollSidekiq    = "RollSidekiq"
	StepRollStreaming  = "RollStreaming"
	StepRollWeb        = "RollWeb"
)

// plan is the state machine of a migration: the ordered steps of its strategy.
func (r *MastodonMigrationReconciler) plan(m *v1alpha1.MastodonMigration) []step {
	preflight := step{name: StepPreflight, phase: v1alpha1.PhasePreflight, run: r.preflight, rerunOnSpecChange: true}
	switch m.Spec.Strategy {
	case v1alpha1.StrategyBlueGreen, "":
		return []step{
			preflight,
			{name: StepValues, phase: v1alpha1.PhasePreflight, run: r.generateValues},
			{name: StepSnapshot, phase: v1alpha1.PhaseBackingUp, run: r.snapshot},
			{name: StepDatabaseBackup, phase: v1alpha1.PhaseBackingUp, run: r.databaseBackup},
			{name: StepInstall, phase: v1alpha1.PhaseInstalling, run: r.install},
			{name: StepVerify, phase: v1alpha1.PhaseVerifying, run: r.verify},
			{name: StepShiftTraffic, phase: v1alpha1.PhaseShiftingTraffic, run: r.shiftTraffic},
			{name: StepObserve, phase: v1alpha1.PhaseObserving, run: r.observe},
			{name: StepFinish, phase: v1alpha1.PhaseObserving, run: r.finish},
		}
	case v1alpha1.StrategyInPlace:
		// The runbook's Rolling strategy: the release is installed with nothing running, then
		// each component starts from it, takes its traffic, and the old one stops.
		return []step{
			preflight,
			{name: StepValues, phase: v1alpha1.PhasePreflight, run: r.generateValues},
			{name: StepSnapshot, phase: v1alpha1.PhaseBackingUp, run: r.snapshot},
			{name: StepDatabaseBackup, phase: v1alpha1.PhaseBackingUp, run: r.databaseBackup},
			{name: StepInstall, phase: v1alpha1.PhaseInstalling, run: r.install},
			{name: StepRollSidekiq, phase: v1alpha1.PhaseShiftingTraffic, run: r.roll(rollSidekiq)},
			{name: StepRollStreaming, phase: v1alpha1.PhaseShiftingTraffic, run: r.roll(rollStreaming)},
			{name: StepRollWeb, phase: v1alpha1.PhaseShiftingTraffic, run: r.roll(rollWeb)},
			{name: StepObserve, phase: v1alpha1.PhaseObserving, run: r.observe},
			{name: StepFinish, phase: v1alpha1.PhaseObserving, run: r.finish},
		}
	default:
		return []step{preflight, {name: StepStrategy, phase: v1alpha1.PhasePreflight, run: unbuiltStrategy}}
	}
}

// unbuiltStrategy stops a strategy this version cannot run yet, before anything changes.
func unbuiltStrategy(_ context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	return outcome{state: v1alpha1.StepFailed, message: fmt.Sprintf(
		"strategy %s is not supported by this version of the operator yet: use BlueGreen or InPlace", m.Spec.Strategy)}, nil
}
