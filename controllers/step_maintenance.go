package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/traffic"
	"github.com/mastodon-operator/mastodon-operator/internal/workload"
)

// maintenancePage is the maintenance page of a migration: the project's default page and image,
// or those of spec.maintenance.
func maintenancePage(m *v1alpha1.MastodonMigration) traffic.Maintenance {
	return traffic.Maintenance{Namespace: m.Namespace, Name: m.Name + "-maintenance",
		Page: m.Spec.Maintenance.Page, Image: m.Spec.Maintenance.Image}
}

// maintenanceOn starts the maintenance page and, once its pods are ready, points the source
// Services (or the Ingress backends) at it. Like the switch to the release, the changes are
// planned against the snapshot and recorded, so a rerun plans the same ones and Level 1 undoes
// them.
func (r *MastodonMigrationReconciler) maintenanceOn(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	page := maintenancePage(m)
	if err := traffic.ApplyObjects(ctx, r.Client, page.Objects(), fieldOwner); err != nil {
		return outcome{}, err
	}
	d := &appsv1.Deployment{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: page.Name}, d); err != nil {
		return outcome{}, err
	}
	if current, message, err := workload.RolledOut(d); err != nil {
		return outcome{}, err
	} else if !current {
		return outcome{state: v1alpha1.StepRunning, message: "waiting for the maintenance page: " + message,
			requeueAfter: releaseTimeout(m)}, nil
	}
	switcher, err := traffic.For(string(m.Spec.Traffic.Method))
	if err != nil {
		return outcome{state: v1alpha1.StepFailed, message: err.Error()}, nil
	}
	stack, err := r.trafficStack(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	changes, problems := switcher.Plan(stack, page.Targets())
	if len(problems) > 0 {
		return outcome{state: v1alpha1.StepFailed, message: "the traffic cannot move to the maintenance page: " + problemList(problems)}, nil
	}
	if err := traffic.Apply(ctx, r.Client, m.Namespace, changes, fieldOwner); err != nil {
		var conflict *traffic.ConflictError
		if errors.As(err, &conflict) {
			return outcome{state: v1alpha1.StepFailed, message: err.Error()}, nil
		}
		return outcome{}, err
	}
	if t := m.Status.Traffic; t == nil || t.Target != v1alpha1.TrafficToMaintenance {
		now := metav1.Now()
		m.Status.Traffic = &v1alpha1.TrafficStatus{Target: v1alpha1.TrafficToMaintenance, SwitchedAt: &now}
	}
	m.Status.Traffic.Method = v1alpha1.TrafficMethod(switcher.Method())
	m.Status.Traffic.Changes = recordChanges(changes)
	return outcome{state: v1alpha1.StepSucceeded, message: fmt.Sprintf("maintenance page %s serves the traffic (%s)",
		page.Name, switcher.Method())}, nil
}

// stopSource scales the old Deployments to 0 and waits until their pods are gone, so that
// nothing writes to the database while it is backed up and the chart's hooks migrate it.
func (r *MastodonMigrationReconciler) stopSource(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	src, err := r.sourceStack(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	for _, d := range src.all() {
		if err := r.scaleToZero(ctx, d); err != nil {
			return outcome{}, err
		}
	}
	// Pods, not status.replicas, which leaves out the Terminating ones that still write.
	left, err := r.podsLeft(ctx, m.Namespace, selectorsOf(src.all()))
	if err != nil {
		return outcome{}, err
	}
	if len(left) > 0 {
		return outcome{state: v1alpha1.StepRunning, requeueAfter: podsGonePoll,
			message: fmt.Sprintf("waiting for %s of the old stack to stop: %s", counted(int32(len(left)), "pod", "pods"), podNames(left))}, nil
	}
	return outcome{state: v1alpha1.StepSucceeded, message: fmt.Sprintf("%d old Deployments scaled to 0; their pods are gone",
		len(src.all()))}, nil
}

// removeMaintenance deletes the maintenance page once nothing points at it any more.
func (r *MastodonMigrationReconciler) removeMaintenance(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	page := maintenancePage(m)
	if err := traffic.DeleteObjects(ctx, r.Client, page.Objects()); err != nil {
		return outcome{}, err
	}
	return outcome{state: v1alpha1.StepSucceeded, message: "maintenance page " + page.Name + " removed"}, nil
}

func problemList(problems []traffic.Problem) string {
	msgs := make([]string, len(problems))
	for i, p := range problems {
		msgs[i] = p.String()
	}
	return strings.Join(msgs, "; ")
}
