// Package manifests checks that what is generated from the markers is committed as generated,
// and that the operator's chart renders.
package manifests

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"sigs.k8s.io/yaml"
)

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// generated lists what hack/generate.sh writes.
var generated = []string{
	"api/v1alpha1/zz_generated.deepcopy.go",
	"config/crd/bases/migration.mastodon-operator.io_mastodonmigrations.yaml",
	"config/crd/bases/migration.mastodon-operator.io_mastodonrollbacks.yaml",
	"config/rbac/role.yaml",
	"charts/mastodon-operator/crds/migration.mastodon-operator.io_mastodonmigrations.yaml",
	"charts/mastodon-operator/crds/migration.mastodon-operator.io_mastodonrollbacks.yaml",
	"charts/mastodon-operator/files/manager-role.yaml",
}

// TestGeneratedFilesAreCurrent regenerates into a copy of the sources and compares: a marker
// changed without `make generate` fails here, with the file to regenerate named.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	if os.Getenv("MASTODON_OPERATOR_BIN_DIR") == "" {
		t.Fatal("MASTODON_OPERATOR_BIN_DIR is not set: run `make test`")
	}
	root := repoRoot(t)
	work := t.TempDir()
	for _, p := range []string{"go.mod", "go.sum", "api", "controllers", "internal", "hack", "config", "charts"} {
		cmd := exec.Command("cp", "-r", filepath.Join(root, p), filepath.Join(work, p))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("copying %s: %v: %s", p, err, out)
		}
	}
	cmd := exec.Command(filepath.Join(work, "hack", "generate.sh"), work)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/generate.sh: %v\n%s", err, out)
	}
	for _, p := range generated {
		want, err := os.ReadFile(filepath.Join(work, p))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatalf("%s is missing: run `make generate`", p)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run `make generate` and commit the result", p)
		}
	}
}

// TestOperatorChartLintsAndRenders runs Helm's own linter and engine over charts/mastodon-operator.
func TestOperatorChartLintsAndRenders(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "charts", "mastodon-operator")
	result := lint.All(dir, nil, "mastodon-operator-system", false)
	for _, msg := range result.Messages {
		if msg.Severity >= support.WarningSev {
			t.Errorf("helm lint: %s", msg)
		}
	}
	chrt, err := loader.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ToRenderValues(chrt, nil, chartutil.ReleaseOptions{Name: "mastodon-operator", Namespace: "mastodon-operator-system"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := engine.Render(chrt, vals)
	if err != nil {
		t.Fatal(err)
	}
	var role struct {
		Kind  string           `json:"kind"`
		Rules []map[string]any `json:"rules"`
	}
	for _, doc := range strings.Split(out["mastodon-operator/templates/rbac.yaml"], "\n---\n") {
		if strings.Contains(doc, "kind: ClusterRole\n") {
			if err := yaml.Unmarshal([]byte(doc), &role); err != nil {
				t.Fatal(err)
			}
		}
	}
	generatedRole, err := os.ReadFile(filepath.Join(repoRoot(t), "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		Rules []map[string]any `json:"rules"`
	}
	if err := yaml.Unmarshal(generatedRole, &want); err != nil {
		t.Fatal(err)
	}
	if len(role.Rules) == 0 || len(role.Rules) != len(want.Rules) {
		t.Fatalf("the chart's ClusterRole has %d rules, the generated role %d", len(role.Rules), len(want.Rules))
	}
	if !strings.Contains(out["mastodon-operator/templates/deployment.yaml"], "image: \"ghcr.io/mastodon-operator/mastodon-operator:0.1.0\"") {
		t.Errorf("the Deployment does not default its image tag to the appVersion:\n%s", out["mastodon-operator/templates/deployment.yaml"])
	}
}
