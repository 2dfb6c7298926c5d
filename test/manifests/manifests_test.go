// Package manifests checks that what is generated from the markers is committed as generated,
// and that the operator's chart renders.
package manifests

import (
	"bytes"
	"fmt"
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
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
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
	"charts/mastodon-operator/templates/crds/migration.mastodon-operator.io_mastodonmigrations.yaml",
	"charts/mastodon-operator/templates/crds/migration.mastodon-operator.io_mastodonrollbacks.yaml",
	"charts/mastodon-operator/files/manager-role.yaml",
	"charts/mastodon-operator/files/leader-election-role.yaml",
	"config/manager/manager.yaml",
	"docs/api.md",
}

// TestGeneratedFilesAreCurrent regenerates into a copy of the sources and compares: a marker
// changed without `make generate` fails here, with the file to regenerate named.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	if os.Getenv("MASTODON_OPERATOR_BIN_DIR") == "" {
		t.Fatal("MASTODON_OPERATOR_BIN_DIR is not set: run `make test`")
	}
	root := repoRoot(t)
	work := t.TempDir()
	for _, p := range []string{"go.mod", "go.sum", "api", "controllers", "internal", "hack", "config", "charts", "docs"} {
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

// render renders the operator's chart with values, as `helm template` would, checking them
// against values.schema.json first.
func render(t *testing.T, values map[string]any) map[string]string {
	t.Helper()
	out, err := renderErr(t, values)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func renderErr(t *testing.T, values map[string]any) (map[string]string, error) {
	t.Helper()
	chrt, err := loader.Load(filepath.Join(repoRoot(t), "charts", "mastodon-operator"))
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ToRenderValues(chrt, values, chartutil.ReleaseOptions{Name: "mastodon-operator", Namespace: "mastodon-operator-system"}, nil)
	if err != nil {
		return nil, err
	}
	return engine.Render(chrt, vals)
}

// objects lists the objects of a rendered chart by kind/namespace/name.
func objects(t *testing.T, out map[string]string) map[string]map[string]any {
	t.Helper()
	objs := map[string]map[string]any{}
	for file, text := range out {
		if !strings.HasSuffix(file, ".yaml") {
			continue
		}
		for _, doc := range strings.Split(text, "\n---\n") {
			var o map[string]any
			if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if o == nil {
				continue
			}
			meta, _ := o["metadata"].(map[string]any)
			ns, _ := meta["namespace"].(string)
			objs[fmt.Sprintf("%s/%s/%s", o["kind"], ns, meta["name"])] = o
		}
	}
	return objs
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
	out := render(t, nil)
	clusterRole := objects(t, out)["ClusterRole//mastodon-operator"]
	var role struct {
		Rules []map[string]any `json:"rules"`
	}
	raw, _ := yaml.Marshal(clusterRole)
	if err := yaml.Unmarshal(raw, &role); err != nil {
		t.Fatal(err)
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

// TestOperatorChartModes renders what each values switch is for: CRDs that helm upgrade updates
// and uninstall keeps, the namespaced mode, the allowlist, logs, metrics and the PDB.
func TestOperatorChartModes(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		objs := objects(t, render(t, nil))
		crd := objs["CustomResourceDefinition//mastodonmigrations.migration.mastodon-operator.io"]
		if crd == nil {
			t.Fatal("the CRDs are not among the chart's templates, so helm upgrade would not update them")
		}
		if got := crd["metadata"].(map[string]any)["annotations"].(map[string]any)["helm.sh/resource-policy"]; got != "keep" {
			t.Errorf("a CRD's helm.sh/resource-policy is %v, want keep: helm uninstall would delete every migration", got)
		}
		args := managerArgs(t, objs)
		for _, want := range []string{"--allowed-chart-repositories=https://mastodon.github.io/helm-charts/", "--zap-encoder=json", "--metrics-bind-address=:8443", "--leader-elect=true"} {
			if !strings.Contains(args, want) {
				t.Errorf("the manager's args lack %s: %s", want, args)
			}
		}
		if strings.Contains(args, "--watch-namespaces") {
			t.Errorf("the cluster-wide default passes --watch-namespaces: %s", args)
		}
		// Namespaced objects carry no namespace in the templates: Helm installs them into the release's.
		for _, key := range []string{"Service//mastodon-operator-metrics", "PodDisruptionBudget//mastodon-operator",
			"ClusterRoleBinding//mastodon-operator", "ClusterRole//mastodon-operator-metrics-reader", "Role//mastodon-operator-leader-election"} {
			if objs[key] == nil {
				t.Errorf("%s is not rendered", key)
			}
		}
		if objs["ServiceMonitor//mastodon-operator"] != nil {
			t.Error("a ServiceMonitor is rendered by default, which fails without the Prometheus operator's CRDs")
		}
	})
	t.Run("namespaced", func(t *testing.T) {
		pdbs := map[string]any{"apiGroups": []any{"policy"}, "resources": []any{"poddisruptionbudgets"}, "verbs": []any{"get"}}
		objs := objects(t, render(t, map[string]any{"watchNamespaces": []any{"mastodon", "mastodon-2"}, "rbac": map[string]any{"extraRules": []any{pdbs}}}))
		if objs["ClusterRole//mastodon-operator"] != nil || objs["ClusterRoleBinding//mastodon-operator"] != nil {
			t.Error("the namespaced mode still grants the manager's rules cluster-wide")
		}
		for _, ns := range []string{"mastodon", "mastodon-2"} {
			role := objs["Role/"+ns+"/mastodon-operator"]
			if role == nil || objs["RoleBinding/"+ns+"/mastodon-operator"] == nil {
				t.Fatalf("no Role and RoleBinding in watched namespace %s", ns)
			}
			if rules := fmt.Sprint(role["rules"]); strings.Contains(rules, "tokenreviews") || !strings.Contains(rules, "poddisruptionbudgets") || !strings.Contains(rules, "mastodonmigrations") {
				t.Errorf("the Role in %s lists the cluster-scoped tokenreviews, or lacks the manager's or the extra rules: %s", ns, rules)
			}
		}
		if !strings.Contains(fmt.Sprint(objs["ClusterRole//mastodon-operator-metrics-auth"]["rules"]), "tokenreviews") {
			t.Error("the namespaced mode cannot authenticate the metrics endpoint's callers")
		}
		if args := managerArgs(t, objs); !strings.Contains(args, "--watch-namespaces=mastodon,mastodon-2") {
			t.Errorf("the manager is not told which namespaces to watch: %s", args)
		}
	})
	t.Run("switches", func(t *testing.T) {
		objs := objects(t, render(t, map[string]any{
			"crds": map[string]any{"install": false}, "allowedChartRepositories": []any{},
			"log":                 map[string]any{"format": "console", "level": "debug"},
			"metrics":             map[string]any{"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}}},
			"podDisruptionBudget": map[string]any{"enabled": false},
		}))
		for key := range objs {
			if strings.HasPrefix(key, "CustomResourceDefinition/") || strings.HasPrefix(key, "PodDisruptionBudget/") {
				t.Errorf("%s is rendered though turned off", key)
			}
		}
		sm := objs["ServiceMonitor//mastodon-operator"]
		if sm == nil || sm["metadata"].(map[string]any)["labels"].(map[string]any)["release"] != "prom" {
			t.Errorf("the ServiceMonitor is missing or lacks its labels: %v", sm)
		}
		args := managerArgs(t, objs)
		if strings.Contains(args, "--allowed-chart-repositories") || !strings.Contains(args, "--zap-encoder=console") || !strings.Contains(args, "--zap-log-level=debug") {
			t.Errorf("the manager's args do not follow the values: %s", args)
		}
	})
	t.Run("schema refuses bad values", func(t *testing.T) {
		for name, values := range map[string]map[string]any{
			"log format":       {"log": map[string]any{"format": "xml"}},
			"repository":       {"allowedChartRepositories": []any{"ftp://charts"}},
			"namespace":        {"watchNamespaces": []any{"Not_A_Namespace"}},
			"misspelled value": {"concurent": 8},
		} {
			if _, err := renderErr(t, values); err == nil || !strings.Contains(err.Error(), "schema") {
				t.Errorf("%s: the values were accepted (%v)", name, err)
			}
		}
	})
}

func managerArgs(t *testing.T, objs map[string]map[string]any) string {
	t.Helper()
	d := objs["Deployment//mastodon-operator"]
	if d == nil {
		t.Fatal("no Deployment rendered")
	}
	containers := d["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)
	return fmt.Sprint(containers[0].(map[string]any)["args"])
}

// TestKustomizeInstallNamesWhatTheChartNames builds config/default (what make deploy applies) and
// renders the chart as the README installs it: the same objects under the same names, in the same
// namespace, the bindings naming the same ServiceAccount, so that either install takes over the
// other's objects. (helm --create-namespace makes the Namespace, which the chart does not render.)
func TestKustomizeInstallNamesWhatTheChartNames(t *testing.T) {
	opts := krusty.MakeDefaultOptions()
	res, err := krusty.MakeKustomizer(opts).Run(filesys.MakeFsOnDisk(), filepath.Join(repoRoot(t), "config", "default"))
	if err != nil {
		t.Fatal(err)
	}
	built := map[string]map[string]any{}
	for _, r := range res.Resources() {
		if r.GetKind() == "Namespace" {
			if r.GetName() != "mastodon-operator-system" {
				t.Errorf("config/default makes namespace %s", r.GetName())
			}
			continue
		}
		m, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		built[fmt.Sprintf("%s/%s/%s", r.GetKind(), r.GetNamespace(), r.GetName())] = m
	}
	rendered := map[string]map[string]any{}
	for key, o := range objects(t, render(t, nil)) {
		kind, rest, _ := strings.Cut(key, "/")
		if _, name, ok := strings.Cut(rest, "/"); ok && !strings.HasPrefix(kind, "Cluster") && kind != "CustomResourceDefinition" {
			key = kind + "/mastodon-operator-system/" + name // Helm puts namespaced objects in the release's
		}
		rendered[key] = o
	}
	for key := range rendered {
		if built[key] == nil {
			t.Errorf("the chart renders %s, config/default does not", key)
		}
	}
	for key, o := range built {
		if rendered[key] == nil {
			t.Errorf("config/default has %s, the chart does not", key)
		}
		if subjects, ok := o["subjects"]; ok && fmt.Sprint(subjects) != fmt.Sprint(rendered[key]["subjects"]) {
			t.Errorf("%s binds %v, the chart's %v", key, subjects, rendered[key]["subjects"])
		}
		if ref, ok := o["roleRef"]; ok && fmt.Sprint(ref) != fmt.Sprint(rendered[key]["roleRef"]) {
			t.Errorf("%s refers to %v, the chart's to %v", key, ref, rendered[key]["roleRef"])
		}
	}
}
