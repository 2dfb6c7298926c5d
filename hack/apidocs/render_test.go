package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func render(t *testing.T) string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("..", "..", "config", "crd", "bases", "*.yaml"))
	if err != nil || len(paths) != 2 {
		t.Fatalf("the CRDs: %v %v", paths, err)
	}
	crds, err := readCRDs(paths)
	if err != nil {
		t.Fatal(err)
	}
	return Render(crds)
}

// TestReferenceShowsWhatTheAPIServerChecks reads the generated CRDs and looks in the reference
// for what a user looks up: a field's default and enum, a printer column, an admission rule with
// its message, a nested object's own section.
func TestReferenceShowsWhatTheAPIServerChecks(t *testing.T) {
	md := render(t)
	for _, want := range []string{
		"| `strategy` | string | `\"BlueGreen\"` | one of `BlueGreen`, `InPlace`, `Maintenance` |",
		"| Phase | string | `.status.phase` | always |",
		"| Message | string | `.status.conditions[?(@.type==\"Ready\")].message` | with `-o wide` |",
		"rollbackLevel 3 restores the database from the pre-migration backup and loses every write made since: set spec.confirmDataLoss: true to confirm",
		"| `rollbackLevel` | integer (int32) |  | at least 0; at most 3 |",
		"| `chart` | [object](#mastodonmigration-v1alpha1-spec-release-chart) |",
		"### MastodonMigration `.spec.release.chart`",
		"| `sidekiq` | [][object](#mastodonmigration-v1alpha1-spec-source-sidekiq) |  | required; at least 1 item; at most 16 items |",
		"CEL: release.timeout must be between 30s and 2h",
		"## MastodonRollback",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the reference lacks %q", want)
		}
	}
	// A pipe in a rule would end its table cell; an angle bracket outside code would be HTML.
	if strings.Contains(md, "self.rollbackLevel < 3 ||") {
		t.Error("a CEL rule's || is not escaped in its table cell")
	}
	if strings.Contains(md, "flux/<namespace>") {
		t.Error("an angle bracket outside a code span is left for HTML to swallow")
	}
}

// TestReferenceLinksResolve checks that every link to a section has its anchor, and that no
// anchor is defined twice.
func TestReferenceLinksResolve(t *testing.T) {
	md := render(t)
	ids := map[string]int{}
	for _, m := range regexp.MustCompile(`<a id="([^"]+)"></a>`).FindAllStringSubmatch(md, -1) {
		ids[m[1]]++
	}
	for id, n := range ids {
		if n > 1 {
			t.Errorf("anchor %s is defined %d times", id, n)
		}
	}
	links := regexp.MustCompile(`\]\(#([^)]+)\)`).FindAllStringSubmatch(md, -1)
	if len(links) < 50 {
		t.Fatalf("only %d links to sections", len(links))
	}
	for _, m := range links {
		if ids[m[1]] == 0 {
			t.Errorf("link to #%s, which no section has", m[1])
		}
	}
}
