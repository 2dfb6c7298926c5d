// Command manager-manifest writes config/manager/manager.yaml from the operator's chart: the
// Deployment that `make deploy` (kustomize) applies is the one `helm install` renders with its
// default values, so the two never drift. hack/generate.sh runs it.
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

// kustomize's names: config/default prefixes them and sets the namespace, and `make deploy`
// replaces controller:latest by $(IMG).
var values = map[string]any{
	"fullnameOverride": "controller-manager",
	"image":            map[string]any{"repository": "controller", "tag": "latest"},
}

const header = `# Generated from charts/mastodon-operator/templates/deployment.yaml by hack/generate.sh: do not edit.
apiVersion: v1
kind: Namespace
metadata:
  name: system
  labels:
    app.kubernetes.io/name: mastodon-operator
---
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
	vals, err := chartutil.ToRenderValues(chrt, values, chartutil.ReleaseOptions{Name: "mastodon-operator", Namespace: "system"}, nil)
	if err != nil {
		return err
	}
	out, err := engine.Render(chrt, vals)
	if err != nil {
		return err
	}
	var deployment map[string]any
	if err := yaml.Unmarshal([]byte(out["mastodon-operator/templates/deployment.yaml"]), &deployment); err != nil {
		return err
	}
	meta := deployment["metadata"].(map[string]any)
	meta["namespace"] = "system"
	// Helm's bookkeeping labels say nothing true of a kustomize install.
	labels := meta["labels"].(map[string]any)
	delete(labels, "helm.sh/chart")
	delete(labels, "app.kubernetes.io/managed-by")
	body, err := yaml.Marshal(deployment)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, "config", "manager", "manager.yaml"), append(append([]byte(header), bytes.TrimSpace(body)...), '\n'), 0o644)
}
