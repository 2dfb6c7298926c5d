package argocd

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite argocd-cm.yaml and argo-cd-values.yaml from the .lua files")

// carriers are the files that carry the scripts to Argo CD, each with its header and the path of
// the scripts' map inside it.
var carriers = []struct {
	file, header string
	path         []string
}{
	{"argocd-cm.yaml", `# Argo CD's health checks of the operator's kinds, for argocd-cm: the .lua files beside this one,
# written by go test ./config/argocd -update (the test fails when they differ). Apply with
# kubectl -n argocd patch configmap argocd-cm --patch-file config/argocd/argocd-cm.yaml, or
# through the Component in kustomization.yaml.
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
`, []string{"data"}},
	{"argo-cd-values.yaml", `# Values for Argo CD's Helm chart (argo-cd): the same health checks as argocd-cm.yaml, in
# configs.cm, written by go test ./config/argocd -update from the .lua files.
`, []string{"configs", "cm"}},
}

// render writes the scripts under the keys Argo CD reads, as literal blocks.
func render(header string, path []string) string {
	var b strings.Builder
	b.WriteString(header)
	indent := ""
	for _, p := range path {
		b.WriteString(indent + p + ":\n")
		indent += "  "
	}
	keys := make([]string, 0, len(Scripts))
	for k := range Scripts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b.WriteString(indent + "resource.customizations.health." + k + ": |\n")
		for _, line := range strings.Split(strings.TrimRight(Scripts[k], "\n"), "\n") {
			if line == "" {
				b.WriteString("\n")
				continue
			}
			b.WriteString(indent + "  " + line + "\n")
		}
	}
	return b.String()
}

// scriptsIn reads the scripts a carrier holds, as Argo CD reads the YAML.
func scriptsIn(t *testing.T, text []byte, path []string) map[string]string {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(text, &doc); err != nil {
		t.Fatal(err)
	}
	for _, p := range path {
		doc, _ = doc[p].(map[string]any)
	}
	out := map[string]string{}
	for k, v := range doc {
		out[k], _ = v.(string)
	}
	return out
}

func wantKeys() map[string]string {
	want := map[string]string{}
	for k, s := range Scripts {
		want["resource.customizations.health."+k] = s
	}
	return want
}

// TestCarriersHoldTheLuaFiles: argocd-cm.yaml and argo-cd-values.yaml hold the .lua files as they
// are, under the keys Argo CD reads.
func TestCarriersHoldTheLuaFiles(t *testing.T) {
	for _, c := range carriers {
		want := render(c.header, c.path)
		if *update {
			if err := os.WriteFile(c.file, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		if !equalMaps(scriptsIn(t, got, c.path), wantKeys()) {
			t.Errorf("%s does not hold the .lua files: run go test ./config/argocd -update", c.file)
		}
	}
}

// TestComponentAddsTheChecksToArgoCDsConfigMap builds a kustomization of an Argo CD install
// (its argocd-cm) with config/argocd as a Component, as a user would: the ConfigMap keeps its own
// keys and gains the scripts.
func TestComponentAddsTheChecksToArgoCDsConfigMap(t *testing.T) {
	here, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// kustomize takes a component's path relative to the kustomization.
	component, err := filepath.Rel(dir, here)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"kustomization.yaml": "namespace: argocd\nresources: [argocd-cm.yaml]\ncomponents: [" + component + "]\n",
		"argocd-cm.yaml":     "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\ndata:\n  url: https://argocd.example.com\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = types.LoadRestrictionsNone
	res, err := krusty.MakeKustomizer(opts).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatal(err)
	}
	out, err := res.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	got := scriptsIn(t, out, []string{"data"})
	want := wantKeys()
	want["url"] = "https://argocd.example.com"
	if !equalMaps(got, want) {
		t.Errorf("the built argocd-cm has keys %v, want the scripts beside url:\n%s", keysOf(got), out)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
