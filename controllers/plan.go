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
}

// outcome is how a step ended this time round.
type outcome struct {
	// state is Succeeded (go on), Running (waiting; a watch or the requeue wakes it) or Failed
	// (blocked until a person changes something).
	state   v1alpha1.StepState
	message string
	// requeueAfter re-checks a waiting or blocked step even if no watched object changes.
	requeueAfter time.Duration
}

// The names of the steps, as they appear in status.steps.
const (
	StepPreflight = "Preflight"
)

// plan is the state machine of a migration: the ordered steps of its strategy.
//
// Every strategy starts with the pre-migration checklist. This version of the operator stops
// there: the snapshot, backup, install and traffic steps are not built yet.
func (r *MastodonMigrationReconciler) plan(*v1alpha1.MastodonMigration) []step {
	return []step{
		{name: StepPreflight, phase: v1alpha1.PhasePreflight, run: r.preflight, rerunOnSpecChange: true},
	}
}
