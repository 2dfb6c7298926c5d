package helm

import (
	"io"
	"log"
	"os"
	"testing"

	"helm.sh/helm/v3/pkg/lint"
)

// The test chart stands in for the official one in every test, so it must pass `helm lint`
// as the official chart does, with its defaults and with the values the tests give.
func TestTestChartIsLintClean(t *testing.T) {
	// Lint logs the `required` values the defaults leave empty on purpose (the database hosts).
	log.SetOutput(io.Discard)
	t.Cleanup(func() { log.SetOutput(os.Stderr) })

	for name, values := range map[string]map[string]any{"defaults": nil, "databases": databases()} {
		result := lint.All(testChart, values, "mastodon", false)
		for _, msg := range result.Messages {
			t.Errorf("lint with %s: %s", name, msg)
		}
	}
}
