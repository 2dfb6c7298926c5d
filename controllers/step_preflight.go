package controllers

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/preflight"
)

// preflightRecheck re-runs a failed checklist now and then, for what no watch sees (the chart
// repository).
const preflightRecheck = time.Minute

// maxFindings is how many findings status.preflight lists (its maxItems); the summary counts all.
const maxFindings = 50

// preflight runs the pre-migration checklist. It only reads, so running it twice is harmless.
// Findings that block the migration or change its behaviour stop it; informational ones are only
// listed.
func (r *MastodonMigrationReconciler) preflight(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	in := preflight.Input{Client: r.Client, Writer: r.Client, Migration: m, Charts: r.Charts,
		Values:    func(ctx context.Context) (map[string]any, error) { return r.previewValues(ctx, m) },
		SecretEnv: func(ctx context.Context) ([]v1alpha1.SecretEnvVar, error) { return r.previewSecretEnv(ctx, m) },
		Databases: r.cloudSQLDatabases}
	findings, err := preflight.Run(ctx, in, preflight.Checklist())
	if err != nil {
		return outcome{}, err
	}
	sortFindings(findings)
	sum := summarizeFindings(findings)
	m.Status.PreflightSummary = &sum
	m.Status.Preflight = findings[:min(len(findings), maxFindings)]
	message := preflightMessage(sum)
	if sum.Blocks == 0 && sum.Changes == 0 {
		setCondition(&m.Status.Conditions, m.Generation, ConditionPreflightPassed, true, ReasonPreflightPassed, message)
		return outcome{state: v1alpha1.StepSucceeded, message: message}, nil
	}
	setCondition(&m.Status.Conditions, m.Generation, ConditionPreflightPassed, false, ReasonPreflightFailed, message)
	// One note for all findings: the events API folds events of the same reason into one series
	// and would keep only the first one's note.
	return outcome{state: v1alpha1.StepFailed, message: message, note: preflightNote(message, m.Status.Preflight),
		requeueAfter: preflightRecheck}, nil
}

// classRank orders the classes most serious first; an empty class is Blocks.
func classRank(c v1alpha1.FindingClass) int {
	switch c {
	case v1alpha1.FindingChanges:
		return 1
	case v1alpha1.FindingInformational:
		return 2
	}
	return 0
}

// sortFindings puts the most serious findings first. Within a class they stay in the order Run
// returns them, the checklist's (the source stack before the chart, the chart before the env),
// so that what the list keeps is what a person would check first.
func sortFindings(findings []v1alpha1.Finding) {
	slices.SortStableFunc(findings, func(a, b v1alpha1.Finding) int {
		return cmp.Compare(classRank(a.Class), classRank(b.Class))
	})
}

func summarizeFindings(findings []v1alpha1.Finding) v1alpha1.PreflightSummary {
	var sum v1alpha1.PreflightSummary
	for _, f := range findings {
		switch classRank(f.Class) {
		case 0:
			sum.Blocks++
		case 1:
			sum.Changes++
		default:
			sum.Informational++
		}
	}
	sum.Omitted = int32(max(0, len(findings)-maxFindings))
	return sum
}

// preflightMessage is the step's message: the counts, and where the findings are.
func preflightMessage(sum v1alpha1.PreflightSummary) string {
	total := sum.Blocks + sum.Changes + sum.Informational
	switch {
	case total == 0:
		return "every pre-migration check passed"
	case total == sum.Informational:
		return fmt.Sprintf("%s, all informational: the migration goes on; see status.preflight", counted(total, "finding", "findings"))
	}
	var parts []string
	if sum.Blocks > 0 {
		parts = append(parts, counted(sum.Blocks, "blocks", "block")+" the migration")
	}
	if sum.Changes > 0 {
		parts = append(parts, counted(sum.Changes, "changes", "change")+" behaviour")
	}
	if sum.Informational > 0 {
		parts = append(parts, fmt.Sprintf("%d informational", sum.Informational))
	}
	where := "see status.preflight"
	if sum.Omitted > 0 {
		where = fmt.Sprintf("status.preflight lists the %d most serious", maxFindings)
	}
	return fmt.Sprintf("%s: %s; %s", counted(total, "finding", "findings"), strings.Join(parts, ", "), where)
}

// preflightNote is the Warning Event's note: the summary, then the listed findings that stop the
// migration, as many as the note holds (eventNote cuts it).
func preflightNote(message string, listed []v1alpha1.Finding) string {
	var stop []string
	for _, f := range listed {
		if f.Class == v1alpha1.FindingInformational {
			break
		}
		stop = append(stop, f.Message)
	}
	return message + ". First: " + strings.Join(stop, "; ")
}

// counted is n with the word for one or for many.
func counted(n int32, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// cloudSQLDatabases lists the databases of a Cloud SQL instance through the Admin API.
func (r *MastodonMigrationReconciler) cloudSQLDatabases(ctx context.Context, project, instance string) ([]string, error) {
	db, err := r.CloudSQL(ctx)
	if err != nil {
		return nil, err
	}
	return db.Databases(ctx, project, instance)
}
