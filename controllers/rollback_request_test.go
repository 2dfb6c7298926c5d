package controllers

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// One writer per object: the MastodonRollback controller accepts a rollback by writing the
// MastodonRollback alone; the migration's own reconciler reads it through the index and records
// it in the migration's status.
func TestTheRollbackControllerWritesOnlyMastodonRollbacks(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	m := &v1alpha1.MastodonMigration{ObjectMeta: metav1.ObjectMeta{Namespace: "mastodon", Name: "to-helm"},
		Status: v1alpha1.MastodonMigrationStatus{Phase: v1alpha1.PhaseObserving}}
	rb := &v1alpha1.MastodonRollback{ObjectMeta: metav1.ObjectMeta{Namespace: "mastodon", Name: "back"},
		Spec: v1alpha1.MastodonRollbackSpec{MigrationRef: v1alpha1.LocalObjectReference{Name: "to-helm"}, Level: 1, Reason: "5xx over 50%"}}
	var writes []string
	record := func(o client.Object, what string) {
		gvk, err := apiutil.GVKForObject(o, scheme)
		if err != nil {
			t.Fatal(err)
		}
		writes = append(writes, gvk.Kind+what)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(m, rb).WithStatusSubresource(m, rb).
		WithIndex(&v1alpha1.MastodonRollback{}, indexMigrationRef, func(o client.Object) []string {
			return []string{o.(*v1alpha1.MastodonRollback).Spec.MigrationRef.Name}
		}).
		WithInterceptorFuncs(interceptor.Funcs{
			Patch: func(ctx context.Context, c client.WithWatch, o client.Object, p client.Patch, opts ...client.PatchOption) error {
				record(o, "")
				return c.Patch(ctx, o, p, opts...)
			},
			Update: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.UpdateOption) error {
				record(o, "")
				return c.Update(ctx, o, opts...)
			},
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, o client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
				record(o, "/"+sub)
				return c.SubResource(sub).Patch(ctx, o, p, opts...)
			},
			SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, o client.Object, opts ...client.SubResourceUpdateOption) error {
				record(o, "/"+sub)
				return c.SubResource(sub).Update(ctx, o, opts...)
			},
		}).Build()
	r := &MastodonRollbackReconciler{Client: c, Recorder: events.NewFakeRecorder(10)}
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(rb)}); err != nil {
		t.Fatal(err)
	}
	for _, w := range writes {
		if w != "MastodonRollback/status" {
			t.Errorf("the rollback controller wrote %s; it may write only MastodonRollback/status", w)
		}
	}
	got := &v1alpha1.MastodonRollback{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(rb), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != v1alpha1.RollbackRunning {
		t.Fatalf("the rollback is %s, want Running (accepted)", got.Status.Phase)
	}
	after := &v1alpha1.MastodonMigration{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(m), after); err != nil {
		t.Fatal(err)
	}
	if after.Status.Rollback != nil {
		t.Errorf("the migration's status.rollback was written by the rollback controller: %+v", after.Status.Rollback)
	}

	// The migration reads the accepted rollback through the index and asks for it.
	mr := &MastodonMigrationReconciler{Client: c}
	accepted, err := mr.acceptedRollbacks(context.Background(), after)
	if err != nil {
		t.Fatal(err)
	}
	level, trigger, reason := requestedRollback(after, accepted)
	if level != 1 || trigger != TriggerMastodonRollback || reason != "5xx over 50%" {
		t.Errorf("requested rollback = %d, %s, %q; want level 1 by the MastodonRollback with its reason", level, trigger, reason)
	}
}

func TestRequestedRollbackIsTheHighestAsked(t *testing.T) {
	rb := func(level int32) v1alpha1.MastodonRollback {
		return v1alpha1.MastodonRollback{ObjectMeta: metav1.ObjectMeta{Name: "rb"}, Spec: v1alpha1.MastodonRollbackSpec{Level: level}}
	}
	for _, tc := range []struct {
		name     string
		recorded *v1alpha1.RollbackStatus
		spec     int32
		accepted []v1alpha1.MastodonRollback
		level    int32
		trigger  string
	}{
		{name: "nothing asked", level: 0},
		{name: "spec.rollbackLevel", spec: 1, level: 1, trigger: TriggerRollbackLevel},
		{name: "a MastodonRollback above the spec", spec: 1, accepted: []v1alpha1.MastodonRollback{rb(2)}, level: 2, trigger: TriggerMastodonRollback},
		{name: "the recorded one stands at the same level", recorded: &v1alpha1.RollbackStatus{Level: 1, Trigger: TriggerAutomatic},
			spec: 1, accepted: []v1alpha1.MastodonRollback{rb(1)}, level: 1, trigger: TriggerAutomatic},
		{name: "escalation by the spec", recorded: &v1alpha1.RollbackStatus{Level: 1, Trigger: TriggerAutomatic}, spec: 2, level: 2, trigger: TriggerRollbackLevel},
	} {
		m := &v1alpha1.MastodonMigration{Spec: v1alpha1.MastodonMigrationSpec{RollbackLevel: tc.spec}, Status: v1alpha1.MastodonMigrationStatus{Rollback: tc.recorded}}
		level, trigger, _ := requestedRollback(m, tc.accepted)
		if level != tc.level || (level > 0 && trigger != tc.trigger) {
			t.Errorf("%s: requested %d by %s, want %d by %s", tc.name, level, trigger, tc.level, tc.trigger)
		}
	}
}
