package controllers_test

import (
	"context"
	"testing"

	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

func getRollback(ctx context.Context, rb *v1alpha1.MastodonRollback) func() (*v1alpha1.MastodonRollback, error) {
	return func() (*v1alpha1.MastodonRollback, error) {
		got := &v1alpha1.MastodonRollback{}
		err := k8sClient.Get(ctx, client.ObjectKeyFromObject(rb), got)
		return got, err
	}
}

func rollback(ns, name, migration string, level int32) *v1alpha1.MastodonRollback {
	return &v1alpha1.MastodonRollback{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.MastodonRollbackSpec{MigrationRef: v1alpha1.LocalObjectReference{Name: migration},
			Level: level, Reason: "5xx over 50%"},
	}
}

func TestRollbackOfAMissingMigrationIsRefused(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	rb := rollback(ns, "oops", "no-such-migration", 1)
	if err := k8sClient.Create(ctx, rb); err != nil {
		t.Fatal(err)
	}
	eventually(t, getRollback(ctx, rb)).Should(gomega.And(
		gomega.HaveField("Status.Phase", v1alpha1.RollbackFailed),
		gomega.HaveField("Status.Conditions", gomega.ContainElement(gomega.And(
			gomega.HaveField("Type", "Stalled"), gomega.HaveField("Reason", "MigrationNotFound"),
			gomega.HaveField("Message", "MastodonMigration no-such-migration not found in namespace "+ns+": check spec.migrationRef.name"),
		))),
	))
	eventually(t, eventsFor(ctx, "MastodonRollback", rb)).Should(gomega.ContainElement(
		gomega.HaveField("Reason", "MigrationNotFound")))
}

func TestLevel3RollbackNeedsADatabaseBackupConfigured(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	m := migration(ns, "to-helm")
	if err := k8sClient.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	rb := rollback(ns, "restore-db", "to-helm", 3)
	rb.Spec.ConfirmDataLoss = true
	if err := k8sClient.Create(ctx, rb); err != nil {
		t.Fatal(err)
	}
	eventually(t, getRollback(ctx, rb)).Should(gomega.And(
		gomega.HaveField("Status.Phase", v1alpha1.RollbackFailed),
		gomega.HaveField("Status.Conditions", gomega.ContainElement(gomega.HaveField("Reason", "DatabaseBackupNotConfigured"))),
	))
	got, _ := get(ctx, m)()
	gomega.NewWithT(t).Expect(got.Status.Rollback).To(gomega.BeNil(), "a refused rollback must not touch the migration")
}

func TestRollbackOfAMigrationThatChangedNothingSucceedsAndStopsIt(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	m := migration(ns, "to-helm")
	if err := k8sClient.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	rb := rollback(ns, "back", "to-helm", 2)
	if err := k8sClient.Create(ctx, rb); err != nil {
		t.Fatal(err)
	}
	eventually(t, getRollback(ctx, rb)).Should(gomega.And(
		gomega.HaveField("Status.Phase", v1alpha1.RollbackSucceeded),
		gomega.HaveField("Status.ObservedGeneration", int64(1)),
		gomega.HaveField("Status.Steps", gomega.ContainElement(gomega.And(
			gomega.HaveField("Name", "Resolve"), gomega.HaveField("State", v1alpha1.StepSucceeded),
		))),
		gomega.HaveField("Status.Conditions", gomega.ContainElement(gomega.And(
			gomega.HaveField("Type", "Ready"), gomega.HaveField("Status", metav1.ConditionTrue),
			gomega.HaveField("Message", "rolled back at level 2: nothing to undo, the migration had not changed the cluster"),
		))),
	))
	eventually(t, get(ctx, m)).Should(gomega.And(
		gomega.HaveField("Status.Phase", v1alpha1.PhaseRolledBack),
		gomega.HaveField("Status.Rollback.Trigger", "MastodonRollback"),
		gomega.HaveField("Status.Rollback.Reason", "5xx over 50%"),
	))
	// A lower level afterwards is refused: a rollback only escalates.
	lower := rollback(ns, "lower", "to-helm", 1)
	if err := k8sClient.Create(ctx, lower); err != nil {
		t.Fatal(err)
	}
	eventually(t, getRollback(ctx, lower)).Should(gomega.And(
		gomega.HaveField("Status.Phase", v1alpha1.RollbackFailed),
		gomega.HaveField("Status.Conditions", gomega.ContainElement(gomega.HaveField("Message",
			"MastodonMigration to-helm was already rolled back at level 2; a rollback only escalates"))),
	))
}
