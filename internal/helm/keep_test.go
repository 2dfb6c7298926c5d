package helm

import (
	"slices"
	"strings"
	"testing"

	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

// pvcValues render the official chart with its volumes instead of S3, as an instance without
// object storage runs it: two PersistentVolumeClaims, with the chart's keepAfterDelete default.
func pvcValues() map[string]any {
	v := fixture.OfficialChartMinimalValues("mastodon")
	m := v["mastodon"].(map[string]any)
	m["s3"] = map[string]any{"enabled": false}
	m["pvc"] = map[string]any{"enabled": true}
	return v
}

// The chart's keepAfterDelete does not keep the PVCs from an uninstall; the keep post-renderer
// does, and keeps the named ConfigMap the old stack reads, and nothing else.
func TestKeepProtectsThePVCsAndTheSharedConfigFromUninstall(t *testing.T) {
	without, err := planUninstall(manifestOf(t, pvcValues()))
	if err != nil {
		t.Fatal(err)
	}
	pvcs := []string{"PersistentVolumeClaim/mastodon-helm-assets", "PersistentVolumeClaim/mastodon-helm-system"}
	for _, pvc := range pvcs {
		if !slices.Contains(without.Deletes, pvc) {
			t.Errorf("without Keep, uninstall deletes %v: want %s among them (keepAfterDelete protects nothing)", without.Deletes, pvc)
		}
	}
	if len(without.Keeps) != 0 {
		t.Errorf("without Keep, uninstall keeps %v, want nothing", without.Keeps)
	}

	with, err := planUninstall(manifestOf(t, pvcValues(),
		WithKeep(Keep{ConfigMaps: []string{"mastodon-helm-env"}, Secrets: []string{"not-rendered"}})))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(with.Keeps)
	want := append([]string{"ConfigMap/mastodon-helm-env"}, pvcs...)
	if !slices.Equal(with.Keeps, want) {
		t.Errorf("with Keep, uninstall keeps %v, want %v", with.Keeps, want)
	}
	if len(with.Deletes)+len(with.Keeps) != len(without.Deletes) {
		t.Errorf("with Keep: %d deleted + %d kept, want the %d objects of the release", len(with.Deletes), len(with.Keeps), len(without.Deletes))
	}
	for _, key := range with.Deletes {
		if strings.HasPrefix(key, "PersistentVolumeClaim/") || key == "ConfigMap/mastodon-helm-env" {
			t.Errorf("with Keep, uninstall still deletes %s", key)
		}
	}
	if !slices.Contains(with.Deletes, "Deployment/mastodon-helm-web") {
		t.Errorf("with Keep, uninstall deletes %v: want the Deployments among them", with.Deletes)
	}
}
