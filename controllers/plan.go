package controllers

import (
	"context"
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
	// failureStands makes a Failed outcome the end of the migration for its generation (phase
	// Failed): the step is not run again until the spec changes. Other failed steps look again
	// on every reconcile (a preflight finding fixed).
	failureStands bool
}

// outcome is how a step ended this time round.
type outcome struct {
	// state is Succeeded or Skipped (go on), Running (waiting; a watch or the requeue wakes it)
	// or Failed (blocked until a person changes something).
	state   v1alpha1.StepState
	message string
	// note is the Event's note when it says more than the message; empty means the message.
	note string
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
	StepBaseline       = "Baseline"
	StepShiftTraffic   = "ShiftTraffic"
	StepObserve        = "Observe"
	StepFinish         = "Finish"
	StepMaintenanceOn  = "MaintenancePageOn"
	StepStopSource     = "StopOldStack"
	StepMaintenanceOff = "MaintenancePageOff"
	StepRollSidekiq    = "RollSidekiq"
	StepRollStreaming  = "RollStreaming"
	StepRollWeb        = "RollWeb"
	StepHandOver       = "HandOver"
)

// plan is the state machine of a migration: the ordered steps of its strategy.
func (r *MastodonMigrationReconciler) plan(m *v1alpha1.MastodonMigration) []step {
	preflight := step{name: StepPreflight, phase: v1alpha1.PhasePreflight, run: r.preflight, rerunOnSpecChange: true}
	values := step{name: StepValues, phase: v1alpha1.PhasePreflight, run: r.generateValues}
	snapshot := step{name: StepSnapshot, phase: v1alpha1.PhaseBackingUp, run: r.snapshot}
	backup := step{name: StepDatabaseBackup, phase: v1alpha1.PhaseBackingUp, run: r.databaseBackup}
	install := step{name: StepInstall, phase: v1alpha1.PhaseInstalling, run: r.install}
	// A Verify that timed out stays failed when the pods turn ready later: a release that needed
	// more than its timeout is for a person to judge before it takes the traffic.
	verify := step{name: StepVerify, phase: v1alpha1.PhaseVerifying, run: r.verify, failureStands: true}
	baseline := step{name: StepBaseline, phase: v1alpha1.PhaseVerifying, run: r.baseline}
	shift := step{name: StepShiftTraffic, phase: v1alpha1.PhaseShiftingTraffic, run: r.shiftTraffic}
	// An Observe that told on-call to roll back (spec.rollback.automatic false) holds there: a
	// later pass must not finish the migration and stop the old stack under them.
	observe := step{name: StepObserve, phase: v1alpha1.PhaseObserving, run: r.observe, failureStands: true}
	finish := step{name: StepFinish, phase: v1alpha1.PhaseObserving, run: r.finish}
	switch m.Spec.Strategy {
	case v1alpha1.StrategyInPlace:
		// The runbook's Rolling strategy: the release is installed with nothing running, then
		// each component starts from it, takes its traffic, and the old one stops.
		// HandOver readies the old stack's objects that the chart names as its own.
		return []step{preflight, values, snapshot, backup,
			{name: StepHandOver, phase: v1alpha1.PhaseInstalling, run: r.handOver},
			install, baseline,
			{name: StepRollSidekiq, phase: v1alpha1.PhaseShiftingTraffic, run: r.roll(rollSidekiq)},
			{name: StepRollStreaming, phase: v1alpha1.PhaseShiftingTraffic, run: r.roll(rollStreaming)},
			{name: StepRollWeb, phase: v1alpha1.PhaseShiftingTraffic, run: r.roll(rollWeb)},
			observe, finish}
	case v1alpha1.StrategyMaintenance:
		// The baseline is taken while the old stack still serves; the database is backed up once
		// nothing writes to it.
		return []step{preflight, values, snapshot, baseline,
			{name: StepMaintenanceOn, phase: v1alpha1.PhaseShiftingTraffic, run: r.maintenanceOn},
			{name: StepStopSource, phase: v1alpha1.PhaseShiftingTraffic, run: r.stopSource},
			backup, install, verify, shift,
			{name: StepMaintenanceOff, phase: v1alpha1.PhaseShiftingTraffic, run: r.removeMaintenance},
			observe, finish}
	}
	// BlueGreen, the default: the release beside the old stack, then the switch.
	return []step{preflight, values, snapshot, backup, install, verify, baseline, shift, observe, finish}
}
