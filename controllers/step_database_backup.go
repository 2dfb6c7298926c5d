package controllers

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/database"
)

// backupPoll is how often a running Cloud SQL backup is looked at; nothing in the cluster
// changes when it ends, so no watch can wake the step.
const backupPoll = 10 * time.Second

// Backup run states of the Cloud SQL Admin API.
const (
	backupSuccessful = "SUCCESSFUL"
	backupFailed     = "FAILED"
)

// backupDescription identifies this migration's backup run, so a restart finds it instead of
// starting a second one.
func backupDescription(m *v1alpha1.MastodonMigration) string {
	return fmt.Sprintf("mastodon-operator %s/%s %s", m.Namespace, m.Name, m.UID)
}

// databaseBackup takes an on-demand Cloud SQL backup and waits for it, when the spec names an
// instance: the release's hook Jobs may migrate the shared database before any traffic moves.
func (r *MastodonMigrationReconciler) databaseBackup(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	instance := m.Spec.Rollback.Database.CloudSQL
	if instance == nil {
		return outcome{state: v1alpha1.StepSkipped,
			message: "no spec.rollback.database.cloudSQL: no database backup taken, so no level 3 rollback"}, nil
	}
	db, err := r.CloudSQL(ctx)
	if err != nil {
		return outcome{}, err
	}
	where := instance.Project + "/" + instance.Instance
	var backup *database.Backup
	if st := m.Status.DatabaseBackup; st != nil && st.ID != "" {
		backup, err = db.Backup(ctx, instance.Project, instance.Instance, st.ID)
	} else {
		backup, err = db.StartBackup(ctx, instance.Project, instance.Instance, backupDescription(m))
	}
	if err != nil {
		return outcome{}, err
	}
	m.Status.DatabaseBackup = &v1alpha1.DatabaseBackupStatus{Instance: where, ID: backup.ID, State: backup.Status}
	switch backup.Status {
	case backupSuccessful:
		taken := metav1.NewTime(backup.EndedAt)
		m.Status.DatabaseBackup.TakenAt = &taken
		return outcome{state: v1alpha1.StepSucceeded, message: fmt.Sprintf("Cloud SQL backup %s of %s taken", backup.ID, where)}, nil
	case backupFailed:
		return outcome{state: v1alpha1.StepFailed, message: fmt.Sprintf(
			"Cloud SQL backup %s of %s failed: check the instance in the Cloud console, then delete and recreate the migration to try again",
			backup.ID, where), requeueAfter: backupPoll}, nil
	default:
		return outcome{state: v1alpha1.StepRunning, message: fmt.Sprintf("Cloud SQL backup %s of %s is %s",
			backup.ID, where, backup.Status), requeueAfter: backupPoll}, nil
	}
}
