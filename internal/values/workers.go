package values

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/mastodon-operator/mastodon-operator/internal/scheduler"
)

// sidekiqContainers are the names that pick a Sidekiq Deployment's Mastodon container.
var sidekiqContainers = []string{"sidekiq", "worker"}

// WorkerNames are the names of the chart workers (mastodon.sidekiq.workers[].name) that
// GenerateWithNotes makes of these Sidekiq Deployments, in order; for one split off its
// scheduler queue, that of the worker that keeps the other queues. A name does not depend on
// replicas, so it is the same whenever the stack is read.
func WorkerNames(sidekiq []*appsv1.Deployment) ([]string, error) {
	used := map[string]bool{}
	out := make([]string, len(sidekiq))
	for i, d := range sidekiq {
		c, err := pickContainer(d, "sidekiq", sidekiqContainers)
		if err != nil {
			return nil, err
		}
		out[i] = uniqueName(used, workerName(d.Name, len(parseSidekiq(sidekiqArgs(c)).queues) > 0))
	}
	return out, nil
}

// uniqueName is name, or name-2, name-3... when it is taken, and marks it taken.
func uniqueName(used map[string]bool, name string) string {
	for base, i := name, 2; used[name]; i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	used[name] = true
	return name
}

// WorkerComponent is the app.kubernetes.io/component label the chart gives the pods of a
// worker (and its Deployment's selector); the Deployment is named <fullname>-sidekiq-<worker>.
func WorkerComponent(worker string) string { return "sidekiq-" + worker }

// ReleaseWorker is the release's Deployment that takes over the load of the old Sidekiq
// Deployment sidekiq[i], at which Finish re-points the old one's HPA; release are the release's
// Deployments by component (app.kubernetes.io/component), live or rendered. It is the worker of
// the name GenerateWithNotes gives the old Deployment (WorkerNames), which with generated values
// is the one made of it, the non-scheduler half when it was split; when the values name no such
// worker (they came from the user), the release's only worker that does not consume the
// scheduler queue. Never one that consumes it: an HPA would scale it to more than one scheduler.
// Nil, and why, when there is none.
func ReleaseWorker(sidekiq []*appsv1.Deployment, i int, release map[string]*appsv1.Deployment) (*appsv1.Deployment, string) {
	names, err := WorkerNames(sidekiq)
	if err != nil {
		return nil, err.Error()
	}
	if d := release[WorkerComponent(names[i])]; d != nil {
		if v := scheduler.Consumes(d.Spec.Template.Spec); v.Consumes {
			return nil, fmt.Sprintf("its release worker, Deployment %s, consumes the Sidekiq scheduler queue (%s)", d.Name, v.Why)
		}
		return d, ""
	}
	var others []*appsv1.Deployment
	for _, c := range slices.Sorted(maps.Keys(release)) {
		if strings.HasPrefix(c, WorkerComponent("")) && !scheduler.Consumes(release[c].Spec.Template.Spec).Consumes {
			others = append(others, release[c])
		}
	}
	if len(others) == 1 {
		return others[0], ""
	}
	return nil, fmt.Sprintf("the release has no worker %s, and %d workers that do not consume the Sidekiq scheduler queue, "+
		"so none is its own", names[i], len(others))
}
