package controllers

import (
	"context"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/release"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// waitForCancel is a Helm action that waits until it is canceled, as an install on pods that
// never schedule does until its timeout.
func waitForCancel(ctx context.Context) (*release.Release, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func backgroundMigration() *v1alpha1.MastodonMigration {
	m := &v1alpha1.MastodonMigration{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "m"}}
	m.Spec.Release.Name = "mastodon-helm"
	return m
}

// A rollback's cancel stops the install under way and returns once it has returned; the
// migration is woken when it ends, and the release is free for the next action.
func TestCancelStopsTheInstallUnderWay(t *testing.T) {
	b, m := newHelmActions(), backgroundMigration()
	a, err := b.start(context.Background(), m, actionInstall, waitForCancel)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.start(context.Background(), m, actionUninstall, waitForCancel); err == nil {
		t.Fatal("a second action on the release started beside the install")
	}
	if _, ended, _ := b.result(m, a); ended {
		t.Fatal("the install ended by itself")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	canceled, err := b.cancel(ctx, m, actionInstall)
	if err != nil || !canceled {
		t.Fatalf("cancel = %v, %v; want the install canceled", canceled, err)
	}
	select {
	case <-a.done:
	default:
		t.Fatal("cancel returned before the install did")
	}
	select {
	case e := <-b.ended:
		if e.Object.GetName() != m.Name || e.Object.GetNamespace() != m.Namespace {
			t.Fatalf("woke %s/%s, not the migration", e.Object.GetNamespace(), e.Object.GetName())
		}
	case <-ctx.Done():
		t.Fatal("the end of the install woke no reconcile")
	}
	if b.get(m, actionInstall) != nil {
		t.Fatal("the canceled install is still recorded")
	}
	if canceled, _ := b.cancel(ctx, m, actionInstall); canceled {
		t.Fatal("a second cancel found an install")
	}
}

// When the manager stops, every action is canceled and Start returns only after them.
func TestStoppingTheManagerEndsTheActions(t *testing.T) {
	b, m := newHelmActions(), backgroundMigration()
	a, err := b.start(context.Background(), m, actionInstall, waitForCancel)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	stop()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if rel, ended, err := b.result(m, a); !ended || rel != nil || err == nil {
		t.Fatalf("result = %v, %v, %v; want the install ended by the stop", rel, err, ended)
	}
	if _, err := b.start(context.Background(), m, actionInstall, waitForCancel); err == nil {
		t.Fatal("an action started after the manager stopped")
	}
}
