package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"sigs.k8s.io/yaml"
)

// TestGKEGuideBindsTheChartsServiceAccount renders the operator's chart with the values file of
// docs/gke.md, installed as the guide installs it, and checks that the Workload Identity member
// the guide binds names the ServiceAccount the chart creates, and that the annotation is on it.
func TestGKEGuideBindsTheChartsServiceAccount(t *testing.T) {
	root := repoRoot()
	guide, err := os.ReadFile(filepath.Join(root, "docs", "gke.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(guide)
	values := fencedBlock(t, text, "# gke-values.yaml")
	install := regexp.MustCompile(`helm install (\S+) charts/mastodon-operator -n (\S+) `).FindStringSubmatch(text)
	if install == nil {
		t.Fatal("docs/gke.md has no `helm install NAME charts/mastodon-operator -n NAMESPACE`")
	}
	member := regexp.MustCompile(`svc\.id\.goog\[([^/\]]+)/([^\]]+)\]`).FindStringSubmatch(text)
	if member == nil {
		t.Fatal("docs/gke.md binds no PROJECT.svc.id.goog[NAMESPACE/KSA] member")
	}

	var vals map[string]any
	if err := yaml.Unmarshal([]byte(values), &vals); err != nil {
		t.Fatalf("the guide's values: %v", err)
	}
	chrt, err := loader.Load(filepath.Join(root, "charts", "mastodon-operator"))
	if err != nil {
		t.Fatal(err)
	}
	rv, err := chartutil.ToRenderValues(chrt, vals, chartutil.ReleaseOptions{Name: install[1], Namespace: install[2]}, nil)
	if err != nil {
		t.Fatalf("the chart refuses the guide's values: %v", err)
	}
	out, err := engine.Render(chrt, rv)
	if err != nil {
		t.Fatal(err)
	}
	var sa map[string]any
	for _, doc := range strings.Split(out["mastodon-operator/templates/rbac.yaml"], "\n---\n") {
		var o map[string]any
		if err := yaml.Unmarshal([]byte(doc), &o); err == nil && o["kind"] == "ServiceAccount" {
			sa = o
		}
	}
	if sa == nil {
		t.Fatal("the chart renders no ServiceAccount")
	}
	meta := sa["metadata"].(map[string]any)
	if member[1] != install[2] || member[2] != meta["name"] {
		t.Errorf("the guide binds %s/%s, the chart installed as in the guide creates ServiceAccount %s/%s", member[1], member[2], install[2], meta["name"])
	}
	annotations, _ := meta["annotations"].(map[string]any)
	if gsa, _ := annotations["iam.gke.io/gcp-service-account"].(string); !strings.HasSuffix(gsa, ".iam.gserviceaccount.com") {
		t.Errorf("the ServiceAccount's iam.gke.io/gcp-service-account is %q", gsa)
	}
	if !strings.Contains(out["mastodon-operator/templates/deployment.yaml"], "serviceAccountName: "+member[2]) {
		t.Errorf("the Deployment does not run as %s", member[2])
	}
}

// fencedBlock returns the fenced code block of text whose first line is first.
func fencedBlock(t *testing.T, text, first string) string {
	t.Helper()
	for _, block := range strings.Split(text, "```")[1:] {
		body := block[strings.Index(block, "\n")+1:]
		if strings.HasPrefix(body, first+"\n") {
			return body
		}
	}
	t.Fatalf("no code block starting with %q", first)
	return ""
}
