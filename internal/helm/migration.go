package helm

import (
	"slices"
	"strings"

	"helm.sh/helm/v3/pkg/release"
	batchv1 "k8s.io/api/batch/v1"
	"sigs.k8s.io/yaml"
)

// migrationHooks are the official chart's hook Jobs that migrate the database (rake
// db:prepare before the install, db:migrate after it), by the end of their names.
var migrationHooks = []string{"-db-prepare", "-db-migrate"}

// MigratedWith is the image of the release's first migration hook Job that ran to success, the
// Mastodon version whose migrations the database now has; false when none ran (the hooks are
// off, or failed before they started).
func MigratedWith(rel *release.Release) (string, bool) {
	if rel == nil {
		return "", false
	}
	for _, h := range rel.Hooks {
		if h.Kind != "Job" || h.LastRun.Phase != release.HookPhaseSucceeded ||
			!slices.ContainsFunc(migrationHooks, func(suffix string) bool { return strings.HasSuffix(h.Name, suffix) }) {
			continue
		}
		var job batchv1.Job
		if err := yaml.Unmarshal([]byte(h.Manifest), &job); err != nil || len(job.Spec.Template.Spec.Containers) == 0 {
			continue
		}
		return job.Spec.Template.Spec.Containers[0].Image, true
	}
	return "", false
}
