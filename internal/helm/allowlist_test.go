package helm

import (
	"strings"
	"testing"
)

func TestRepositoryAllowlist(t *testing.T) {
	allow := RepositoryAllowlist{"https://mastodon.github.io/helm-charts/", "oci://ghcr.io/mastodon"}
	for repo, want := range map[string]bool{
		"https://mastodon.github.io/helm-charts/":       true,
		"https://mastodon.github.io/helm-charts":        true,
		"oci://ghcr.io/mastodon/charts":                 true,
		"oci://ghcr.io/mastodon":                        true,
		"oci://ghcr.io/mastodon-fork/charts":            false, // a prefix, but not a path beneath the entry
		"https://mastodon.github.io/helm-charts-mirror": false,
		"https://charts.example.com/":                   false,
	} {
		err := allow.Check(repo)
		if (err == nil) != want {
			t.Errorf("Check(%q) = %v, want allowed=%v", repo, err, want)
		}
		if err != nil && !strings.Contains(err.Error(), "--allowed-chart-repositories: https://mastodon.github.io/helm-charts/, oci://ghcr.io/mastodon") {
			t.Errorf("the refusal does not name the flag and its entries: %v", err)
		}
	}
	if err := RepositoryAllowlist(nil).Check("https://anything.example/"); err != nil {
		t.Errorf("an empty allowlist refused a repository: %v", err)
	}
}
