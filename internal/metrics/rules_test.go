package metrics

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const (
	ruleFile   = "../../config/prometheus/prometheusrule.yaml"
	alertTests = "../../config/prometheus/alerts_test.yaml"
	dashboard  = "../../config/grafana/mastodon-migrations.json"
)

// promtool is Prometheus' own checker, from Debian's prometheus package (make test-deps).
func promtool(t *testing.T, dir string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: run `make test-deps` (Debian's prometheus package)")
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ruleGroups are spec.groups of the sample PrometheusRule, as a plain rule file.
func ruleGroups(t *testing.T) []byte {
	t.Helper()
	raw, err := os.ReadFile(ruleFile)
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		APIVersion string         `json:"apiVersion"`
		Kind       string         `json:"kind"`
		Metadata   map[string]any `json:"metadata"`
		Spec       struct {
			Groups []any `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(raw, &rule); err != nil || rule.APIVersion != "monitoring.coreos.com/v1" || rule.Kind != "PrometheusRule" {
		t.Fatalf("%s is not a PrometheusRule: %v", ruleFile, err)
	}
	out, err := yaml.Marshal(map[string]any{"groups": rule.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTheAlertsAreValidAndFireOnTheExportedSeries checks the PrometheusRule's groups with
// promtool and runs its unit tests: each alert fires on the series Record exports, and its
// annotations read as on-call gets them.
func TestTheAlertsAreValidAndFireOnTheExportedSeries(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), ruleGroups(t), 0o600); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(alertTests)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Log(promtool(t, dir, "check", "rules", "rules.yaml"))
	t.Log(promtool(t, dir, "test", "rules", "alerts_test.yaml"))
}

// TestTheDashboardQueriesAreValidPromQLOnExportedMetrics has promtool parse every query of the
// Grafana dashboard (as recording rules), and checks that every metric the dashboard and the
// alerts name is one the operator registers.
func TestTheDashboardQueriesAreValidPromQLOnExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", dashboard, err)
	}
	// Grafana's variables, as Grafana substitutes them.
	vars := strings.NewReplacer("$__rate_interval", "5m", "$namespace", ".*")
	var rules []map[string]string
	for i, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for j, target := range p.Targets {
			rules = append(rules, map[string]string{"record": fmt.Sprintf("dashboard:panel%d_%d", i, j), "expr": vars.Replace(target.Expr)})
		}
	}
	out, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard.yaml"), out, 0o600); err != nil {
		t.Fatal(err)
	}
	promtool(t, dir, "check", "rules", "dashboard.yaml")

	registered := map[string]bool{}
	for _, c := range []prometheus.Collector{migrations, StepDuration, Rollbacks, Notifications} {
		ch := make(chan *prometheus.Desc, 16)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			registered[regexp.MustCompile(`fqName: "([^"]+)"`).FindStringSubmatch(d.String())[1]] = true
		}
	}
	named := regexp.MustCompile(`mastodon_[a-z_]+`)
	for _, name := range named.FindAllString(string(raw)+string(ruleGroups(t)), -1) {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if !registered[base] {
			t.Errorf("%s is not a metric the operator exports", name)
		}
	}
}

// TestTheAlertsAndTheDashboardInstallWithKustomize builds config/prometheus and config/grafana as
// `kubectl apply -k` does: the PrometheusRule, and the dashboard in a ConfigMap that Grafana's
// sidecar loads.
func TestTheAlertsAndTheDashboardInstallWithKustomize(t *testing.T) {
	build := func(dir string) []*resource.Resource {
		t.Helper()
		res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
		if err != nil {
			t.Fatalf("kustomize build %s: %v", dir, err)
		}
		return res.Resources()
	}
	rules := build("../../config/prometheus")
	if len(rules) != 1 || rules[0].GetKind() != "PrometheusRule" {
		t.Fatalf("config/prometheus builds %d objects, want the PrometheusRule", len(rules))
	}
	dashboards := build("../../config/grafana")
	want, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	if len(dashboards) != 1 || dashboards[0].GetKind() != "ConfigMap" || dashboards[0].GetLabels()["grafana_dashboard"] != "1" {
		t.Fatalf("config/grafana builds %v, want one ConfigMap labelled grafana_dashboard", dashboards)
	}
	if got := dashboards[0].GetDataMap()["mastodon-migrations.json"]; got != string(want) {
		t.Fatalf("the ConfigMap holds another dashboard than %s", dashboard)
	}
}
