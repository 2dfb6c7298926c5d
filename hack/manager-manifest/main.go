// Command manager-manifest writes config/manager/manager.yaml from the operator's chart: the
// Deployment, metrics Service and PodDisruptionBudget that `make deploy` (kustomize) applies are
// the ones `helm install mastodon-operator -n mastodon-operator-system` renders with the default
// values, names and all, so the two never drift and either install can take over the other's
// objects. hack/generate.sh runs it.
package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"sigs.k8s.io/yaml"
)

// The release and namespace the README installs the chart as.
const (
	release   = "mastodon-operator"
	namespace = "mastodon-operator-system"
)

// `make deploy` replaces controller:latest by $(IMG).
var values = map[string]any{
	"image": map[string]any{"repository": "controller", "tag": "latest"},
}

// templates are the chart's templates rendered into manager.yaml, in this order.
var templates = []string{"deployment.yaml", "metrics.yaml", "pdb.yaml"}

const header = `# Generated from charts/mastodon-operator/templates/{deployment,metrics,pdb}.yaml by hack/generate.sh: do not edit.
apiVersion: v1
kind: Namespace
metadata:
  name: mastodon-operator-system
`

func main() {
	root := "."
	if len(os.Args) > 1 {
		root = os.Args[1]
	}
	if err := run(root); err != nil {
		fmt.Fprintln(os.Stderr, "manager-manifest:", err)
		os.Exit(1)
	}
}

func run(root string) error {
	chrt, err := loader.Load(filepath.Join(root, "charts", "mastodon-operator"))
	if err != nil {
		return err
	}
	vals, err := chartutil.ToRenderValues(chrt, values, chartutil.ReleaseOptions{Name: release, Namespace: namespace}, nil)
	if err != nil {
		return err
	}
	out, err := engine.Render(chrt, vals)
	if err != nil {
		return err
	}
	doc := []byte(header)
	for _, tpl := range templates {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(out["mastodon-operator/templates/"+tpl]), &obj); err != nil {
			return fmt.Errorf("%s: %w", tpl, err)
		}
		if obj == nil {
			return fmt.Errorf("%s renders nothing with the default values", tpl)
		}
		meta := obj["metadata"].(map[string]any)
		meta["namespace"] = namespace
		// Helm's bookkeeping labels say nothing true of a kustomize install.
		labels := meta["labels"].(map[string]any)
		delete(labels, "helm.sh/chart")
		delete(labels, "app.kubernetes.io/managed-by")
		body, err := yaml.Marshal(obj)
		if err != nil {
			return err
		}
		doc = append(append(append(doc, "---\n"...), bytes.TrimSpace(body)...), '\n')
	}
	return os.WriteFile(filepath.Join(root, "config", "manager", "manager.yaml"), doc, 0o644)
}
