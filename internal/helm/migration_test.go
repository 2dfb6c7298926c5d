package helm

import (
	"testing"

	"helm.sh/helm/v3/pkg/release"
)

func TestMigratedWith(t *testing.T) {
	job := func(name, image string) string {
		return "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: " + name + "\nspec:\n  template:\n    spec:\n      containers:\n      - name: " +
			name + "\n        image: " + image + "\n        command: [bundle, exec, rake, db:prepare]\n"
	}
	hook := func(name string, phase release.HookPhase) *release.Hook {
		return &release.Hook{Name: name, Kind: "Job", Manifest: job(name, "ghcr.io/mastodon/mastodon:v4.6.2"),
			Events: []release.HookEvent{release.HookPreInstall}, LastRun: release.HookExecution{Phase: phase}}
	}
	for _, tc := range []struct {
		name  string
		hooks []*release.Hook
		want  string
	}{
		{"db:prepare succeeded", []*release.Hook{hook("mastodon-helm-db-prepare", release.HookPhaseSucceeded)}, "ghcr.io/mastodon/mastodon:v4.6.2"},
		{"db:prepare failed, db:migrate never ran", []*release.Hook{hook("mastodon-helm-db-prepare", release.HookPhaseFailed),
			hook("mastodon-helm-db-migrate", release.HookPhaseUnknown)}, ""},
		{"hooks off, another Job ran", []*release.Hook{hook("mastodon-helm-create-admin", release.HookPhaseSucceeded)}, ""},
		{"no hooks", nil, ""},
	} {
		got, ok := MigratedWith(&release.Release{Hooks: tc.hooks})
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, ok, tc.want)
		}
	}
	if _, ok := MigratedWith(nil); ok {
		t.Error("no release migrated")
	}
}
