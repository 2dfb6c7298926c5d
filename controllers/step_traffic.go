package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
	"github.com/mastodon-operator/mastodon-operator/internal/traffic"
)

// shiftTraffic points the source Services (or the Ingress backends) at the release. The switch
// is planned against the snapshot, the stack as it was before the migration, so a second run
// after an interruption plans the same changes; traffic.Apply skips fields already switched and
// refuses to overwrite a field someone else changed meanwhile. The changes are recorded in
// status.traffic for the way back.
func (r *MastodonMigrationReconciler) shiftTraffic(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	switcher, changes, failed, err := r.planSwitch(ctx, m)
	if err != nil || failed != "" {
		return outcome{state: v1alpha1.StepFailed, message: failed}, err
	}
	// From the maintenance page, the fields go from where it left them; the record keeps the
	// changes from the original stack, which is where a rollback returns to.
	apply := changes
	if t := m.Status.Traffic; t != nil && t.Target == v1alpha1.TrafficToMaintenance {
		apply = traffic.Then(trafficChanges(t.Changes), changes)
	}
	if failed, err := r.applySwitch(ctx, m, apply); err != nil || failed != "" {
		return outcome{state: v1alpha1.StepFailed, message: failed}, err
	}
	now := metav1.Now()
	if m.Status.Traffic == nil || m.Status.Traffic.Target != v1alpha1.TrafficToRelease {
		m.Status.Traffic = &v1alpha1.TrafficStatus{Target: v1alpha1.TrafficToRelease, SwitchedAt: &now}
	}
	m.Status.Traffic.Method = v1alpha1.TrafficMethod(switcher.Method())
	m.Status.Traffic.Changes = recordChanges(changes)
	moved := map[string]bool{}
	for _, c := range changes {
		moved[c.Object()] = true
	}
	return outcome{state: v1alpha1.StepSucceeded, message: fmt.Sprintf("traffic moved to release %s by %s: %d object(s) changed",
		m.Spec.Release.Name, switcher.Method(), len(moved))}, nil
}

// planSwitch plans the whole switch to the release against the snapshot. failed says why the
// traffic cannot move, when a person must act.
func (r *MastodonMigrationReconciler) planSwitch(ctx context.Context, m *v1alpha1.MastodonMigration) (_ traffic.Switcher, _ []traffic.Change, failed string, _ error) {
	switcher, err := traffic.For(string(m.Spec.Traffic.Method))
	if err != nil {
		return nil, nil, err.Error(), nil
	}
	stack, err := r.trafficStack(ctx, m)
	if err != nil {
		return nil, nil, "", err
	}
	releaseDeployments, err := r.releaseDeployments(ctx, m)
	if err != nil {
		return nil, nil, "", err
	}
	to, problems := traffic.ReleaseTargets(releaseDeployments, stack.TargetServices)
	changes, more := switcher.Plan(stack, to)
	if problems = append(problems, more...); len(problems) > 0 {
		return nil, nil, "the traffic cannot move: " + problemList(problems), nil
	}
	return switcher, changes, "", nil
}

// applySwitch applies planned changes; a field someone else changed since is a failure for a
// person to look at (failed), not a retry.
func (r *MastodonMigrationReconciler) applySwitch(ctx context.Context, m *v1alpha1.MastodonMigration, changes []traffic.Change) (failed string, _ error) {
	if err := traffic.Apply(ctx, r.Client, m.Namespace, changes, fieldOwner); err != nil {
		var conflict *traffic.ConflictError
		if errors.As(err, &conflict) {
			return err.Error(), nil
		}
		return "", err
	}
	return "", nil
}

// trafficStack reads what the switch looks at: the source Services and Ingress as the snapshot
// holds them, the source Deployments, and the release's Services as they are now.
func (r *MastodonMigrationReconciler) trafficStack(ctx context.Context, m *v1alpha1.MastodonMigration) (traffic.Stack, error) {
	src, err := r.sourceStack(ctx, m)
	if err != nil {
		return traffic.Stack{}, err
	}
	stored, err := snapshot.Load(ctx, r.Client, m.Namespace, snapshotName(m))
	if err != nil {
		return traffic.Stack{}, err
	}
	stack := traffic.Stack{Source: src.byComponent()}
	for _, u := range stored {
		switch u.GetKind() {
		case "Service":
			var s corev1.Service
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &s); err != nil {
				return stack, err
			}
			stack.Services = append(stack.Services, s)
		case "Ingress":
			if u.GetName() == m.Spec.Source.Ingress {
				stack.Ingress = &networkingv1.Ingress{}
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, stack.Ingress); err != nil {
					return stack, err
				}
			}
		}
	}
	var releaseServices corev1.ServiceList
	if err := r.List(ctx, &releaseServices, client.InNamespace(m.Namespace),
		client.MatchingLabels{labelChartInstance: m.Spec.Release.Name}); err != nil {
		return stack, err
	}
	stack.TargetServices = releaseServices.Items
	adopted, err := r.adoptedServices(ctx, m)
	if err != nil {
		return stack, err
	}
	stack.TargetServices = append(stack.TargetServices, adopted...)
	return stack, nil
}

// adoptedServices are the release's Services that it adopted from the old stack, as the chart
// renders them: the live ones still select the old pods until the switch moves them, so the
// switch learns the release's selector and port from the rendering.
func (r *MastodonMigrationReconciler) adoptedServices(ctx context.Context, m *v1alpha1.MastodonMigration) ([]corev1.Service, error) {
	a := m.Status.Adoption
	if a == nil || !slices.ContainsFunc(a.Adopted, func(k string) bool { return strings.HasPrefix(k, "Service/") }) {
		return nil, nil
	}
	manifests, err := r.renderRelease(ctx, m)
	if err != nil {
		return nil, err
	}
	var out []corev1.Service
	for _, key := range a.Adopted {
		kind, name, _ := strings.Cut(key, "/")
		u := manifests.Find(kind, name)
		if kind != "Service" || u == nil {
			continue
		}
		var s corev1.Service
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func trafficChanges(recorded []v1alpha1.TrafficChange) []traffic.Change {
	out := make([]traffic.Change, len(recorded))
	for i, c := range recorded {
		out[i] = traffic.Change{Kind: c.Kind, Name: c.Name, Path: c.Path, Component: traffic.Component(c.Component),
			Before: c.Before, After: c.After}
	}
	return out
}

func recordChanges(changes []traffic.Change) []v1alpha1.TrafficChange {
	out := make([]v1alpha1.TrafficChange, len(changes))
	for i, c := range changes {
		out[i] = v1alpha1.TrafficChange{Kind: c.Kind, Name: c.Name, Path: c.Path, Component: string(c.Component),
			Before: c.Before, After: c.After}
	}
	return out
}
