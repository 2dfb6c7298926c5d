package helm

import (
	"fmt"
	"strings"
)

// RepositoryAllowlist lists the chart repositories the operator may install from (main's
// --allowed-chart-repositories); empty allows any. An entry allows its own URL and every
// location beneath it: "oci://ghcr.io/mastodon" allows "oci://ghcr.io/mastodon/charts".
type RepositoryAllowlist []string

// Check says why repository may not be used, or nil.
func (a RepositoryAllowlist) Check(repository string) error {
	if len(a) == 0 {
		return nil
	}
	repo := strings.TrimRight(repository, "/")
	for _, allowed := range a {
		allowed = strings.TrimRight(allowed, "/")
		if repo == allowed || strings.HasPrefix(repo, allowed+"/") {
			return nil
		}
	}
	return fmt.Errorf("chart repository %s is not one the operator may install from (--allowed-chart-repositories: %s)",
		repository, strings.Join(a, ", "))
}
