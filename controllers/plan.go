package controllers

import (
	"context"
	"time"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// step is one named, idempotent step of a migration. run looks at the world first, acts only
// where the world is not yet as the step wants it, and says how it ended. The engine (runSteps)
// enforces what the step declares: how long it may run, what it changes, what its failure means.
type step struct {
	name      string
	phase     v1alpha1.Phase
	run       func(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error)
	timeout   limit
	effect    effect
	onFailure onFailure
	// rerunOnSpecChange runs a succeeded step again when the spec changes before the next
	// step has started; the engine refuses it on a mutating step.
	rerunOnSpecChange bool
}

// limit is how long a step may stay Running, waiting or erring, before the engine fails it.
type limit struct {
	after func(*v1alpha1.MastodonMigration) time.Duration
	// setting names what sets after, in the failure message.
	setting string
	// then ends the failure message with what a person can do; nil when the message says enough.
	then func(*v1alpha1.MastodonMigration) string
}

// unlimited is the limit of a step that ends by itself, or that something else bounds.
var unlimited = limit{after: func(*v1alpha1.MastodonMigration) time.Duration { return 0 }}

// releaseLimit bounds the waits on the release's pods: the runbook's "roll back if the new pods
// are not up within 10 minutes".
func releaseLimit(then func(*v1alpha1.MastodonMigration) string) limit {
	return limit{after: releaseTimeout, setting: "spec.release.timeout", then: then}
}

// effect says whether a step changes anything but the migration's own status. Zero is no
// declaration, which the engine refuses.
type effect int

const (
	readOnly effect = iota + 1
	mutating
)

// onFailure is what a Failed outcome of a step means. Zero is no declaration.
type onFailure int

const (
	// retry looks again on every reconcile: a person fixes the world (a preflight finding), and
	// the step sees it.
	retry onFailure = iota + 1
	// stopForPerson ends the migration for its generation (phase Failed, Stalled): the step is
	// not run again until the spec changes, however the world changes meanwhile.
	stopForPerson
	// rollBack starts an automatic rollback at level 1 where spec.rollback.automatic allows it;
	// otherwise it stops for a person, who is told how to roll back.
	rollBack
)

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
	preflight := step{name: StepPreflight, phase: v1alpha1.PhasePreflight, run: r.preflight,
		timeout: unlimited, effect: readOnly, onFailure: retry, rerunOnSpecChange: true}
	values := step{name: StepValues, phase: v1alpha1.PhasePreflight, run: r.generateValues,
		timeout: unlimited, effect: mutating, onFailure: retry}
	snapshot := step{name: StepSnapshot, phase: v1alpha1.PhaseBackingUp, run: r.snapshot,
		timeout: unlimited, effect: mutating, onFailure: retry}
	backup := step{name: StepDatabaseBackup, phase: v1alpha1.PhaseBackingUp, run: r.databaseBackup,
		timeout: unlimited, effect: mutating, onFailure: retry}
	// Helm's own timeout (spec.release.timeout) bounds the install.
	install := step{name: StepInstall, phase: v1alpha1.PhaseInstalling, run: r.install,
		timeout: unlimited, effect: mutating, onFailure: retry}
	// A Verify that timed out stays failed when the pods turn ready later: a release that needed
	// more than its timeout is for a person to judge before it takes the traffic.
	verify := step{name: StepVerify, phase: v1alpha1.PhaseVerifying, run: r.verify,
		timeout: releaseLimit(verifyStops), effect: readOnly, onFailure: stopForPerson}
	// baselineAttempts bounds the baseline, which then goes on without one.
	baseline := step{name: StepBaseline, phase: v1alpha1.PhaseVerifying, run: r.baseline,
		timeout: unlimited, effect: readOnly, onFailure: retry}
	shift := step{name: StepShiftTraffic, phase: v1alpha1.PhaseShiftingTraffic, run: r.shiftTraffic,
		timeout: unlimited, effect: mutating, onFailure: retry}
	// The analysis ends Observe. One that called for a rollback holds when the operator may not
	// roll back by itself: a later pass must not finish the migration and stop the old stack
	// under on-call.
	observe := step{name: StepObserve, phase: v1alpha1.PhaseObserving, run: r.observe,
		timeout: unlimited, effect: readOnly, onFailure: rollBack}
	finish := step{name: StepFinish, phase: v1alpha1.PhaseObserving, run: r.finish,
		timeout: unlimited, effect: mutating, onFailure: retry}
	// The release's scheduler consumers were installed stopped: they start once the old ones'
	// pods are gone. A new consumer that does not come up leaves no scheduler: roll back.
	scheduler := step{name: StepHandOverScheduler, phase: v1alpha1.PhaseShiftingTraffic, run: r.handOverScheduler,
		timeout: releaseLimit(noScheduler), effect: mutating, onFailure: rollBack}
	shifting := func(name string, run func(context.Context, *v1alpha1.MastodonMigration) (outcome, error), timeout limit) step {
		return step{name: name, phase: v1alpha1.PhaseShiftingTraffic, run: run, timeout: timeout, effect: mutating, onFailure: retry}
	}
	switch m.Spec.Strategy {
	case v1alpha1.StrategyInPlace:
		// The runbook's Rolling strategy: the release is installed with nothing running, then
		// each component starts from it, takes its traffic, and the old one stops.
		// HandOver readies the old stack's objects that the chart names as its own.
		return []step{preflight, values, snapshot, backup,
			{name: StepHandOver, phase: v1alpha1.PhaseInstalling, run: r.handOver, timeout: unlimited, effect: mutating, onFailure: retry},
			install, baseline, scheduler,
			shifting(StepRollSidekiq, r.roll(rollSidekiq), releaseLimit(oldStillServes(rollSidekiq))),
			shifting(StepRollStreaming, r.roll(rollStreaming), releaseLimit(oldStillServes(rollStreaming))),
			shifting(StepRollWeb, r.roll(rollWeb), releaseLimit(oldStillServes(rollWeb))),
			observe, finish}
	case v1alpha1.StrategyMaintenance:
		// The baseline is taken while the old stack still serves; the database is backed up once
		// nothing writes to it.
		return []step{preflight, values, snapshot, baseline,
			shifting(StepMaintenanceOn, r.maintenanceOn, unlimited),
			shifting(StepStopSource, r.stopSource, unlimited),
			backup, install, verify, scheduler, shift,
			shifting(StepMaintenanceOff, r.removeMaintenance, unlimited),
			observe, finish}
	}
	// BlueGreen, the default: the release beside the old stack, then the switch.
	return []step{preflight, values, snapshot, backup, install, verify, baseline, scheduler, shift, observe, finish}
}

// noScheduler ends the message of a scheduler hand-over that timed out.
func noScheduler(*v1alpha1.MastodonMigration) string {
	return "; no Sidekiq process consumes the scheduler queue: scheduled jobs wait until a rollback (spec.rollbackLevel 1) restarts the old one"
}
