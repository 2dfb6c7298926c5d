package controllers

import (
	"helm.sh/helm/v3/pkg/chart"
	"k8s.io/utils/ptr"

	"github.com/mastodon-operator/mastodon-operator/internal/helm"
	"github.com/mastodon-operator/mastodon-operator/internal/values"
)

// stoppedValues returns vals with every Deployment of the chart at 0 replicas: web, streaming
// and each Sidekiq worker (those of vals, or the chart's default workers when vals names none).
// The InPlace install runs the hooks (db:prepare, db:migrate) once and starts no pod; the roll
// steps then start one component at a time. The result only depends on vals and the chart, so
// an install after a restart gets the same values.
func stoppedValues(vals map[string]any, chrt *chart.Chart) map[string]any {
	return values.Merge(stopWorkers(vals, chrt, func(string) bool { return true }), map[string]any{"mastodon": map[string]any{
		"web":       map[string]any{"replicas": int64(0)},
		"streaming": map[string]any{"replicas": int64(0)},
	}})
}

// stopWorkers returns vals with the Sidekiq workers that stop names at 0 replicas. The workers
// are those of vals, or the chart's default workers when vals names none; the list is written
// whole, as Helm replaces a list of the values rather than merging it.
func stopWorkers(vals map[string]any, chrt *chart.Chart, stop func(worker string) bool) map[string]any {
	workers, ok := lookupList(vals, "mastodon", "sidekiq", "workers")
	if !ok && chrt != nil {
		workers, _ = lookupList(chrt.Values, "mastodon", "sidekiq", "workers")
	}
	stopped := make([]any, 0, len(workers))
	for _, w := range workers {
		entry := map[string]any{}
		if wm, ok := w.(map[string]any); ok {
			entry = values.Merge(wm)
		}
		if name, _ := entry["name"].(string); stop(name) {
			entry["replicas"] = int64(0)
		}
		stopped = append(stopped, entry)
	}
	if len(stopped) == 0 {
		return vals
	}
	return values.Merge(vals, map[string]any{"mastodon": map[string]any{"sidekiq": map[string]any{"workers": stopped}}})
}

// lookupList returns the list at path in a values tree.
func lookupList(vals map[string]any, path ...string) ([]any, bool) {
	var cur any = vals
	for _, key := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur = m[key]
	}
	l, ok := cur.([]any)
	return l, ok
}

// renderedReplicas returns the replicas of each Deployment the chart renders with the
// release's values, by component (web, streaming, sidekiq-<worker>): what each component is
// scaled to when it rolls. Reading them from the render rather than from the values takes the
// chart's defaults into account.
func renderedReplicas(m *helm.Manifests) (map[string]int32, error) {
	deployments, err := m.Deployments()
	if err != nil {
		return nil, err
	}
	out := map[string]int32{}
	for c, d := range deployments {
		out[c] = ptr.Deref(d.Spec.Replicas, 1) // 1 is the API server's default
	}
	return out, nil
}
