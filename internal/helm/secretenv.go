package helm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"

	"helm.sh/helm/v3/pkg/postrender"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// SecretEnv is a post-renderer that gives the release's Mastodon containers variables from
// Secret keys, which the chart cannot pass itself (it reads from Secrets only the variables of
// its existingSecret settings; extraEnvVars and extraEnvFrom take literals and ConfigMaps):
// each becomes an env entry with valueFrom.secretKeyRef. The Mastodon containers are the first
// container of each Deployment whose pod template has the chart's component label (web,
// streaming, each Sidekiq worker; not a sidecar such as prometheus-exporter), and each
// container of a Job that the chart gives SECRET_KEY_BASE (the Rails hook Jobs: db-prepare,
// db-migrate, ...; not the rclone container of assets-upload). A container that already has a
// variable of a name keeps it, so running SecretEnv again changes nothing.
type SecretEnv []v1alpha1.SecretEnvVar

// Run adds the variables to the rendered manifests.
func (s SecretEnv) Run(rendered *bytes.Buffer) (*bytes.Buffer, error) {
	out, err := eachObject(rendered, s.add)
	if err != nil {
		return nil, fmt.Errorf("secretEnv post-renderer: %w", err)
	}
	return out, nil
}

// eachObject decodes a stream of manifests, lets f change each object, and encodes them again.
func eachObject(rendered *bytes.Buffer, f func(*unstructured.Unstructured) error) (*bytes.Buffer, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(rendered, 4096)
	out := &bytes.Buffer{}
	for {
		obj := map[string]any{}
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		if len(obj) == 0 {
			continue // an empty document, such as a template that renders nothing
		}
		u := &unstructured.Unstructured{Object: obj}
		if err := f(u); err != nil {
			return nil, fmt.Errorf("%s %s: %w", u.GetKind(), u.GetName(), err)
		}
		doc, err := yaml.Marshal(u.Object)
		if err != nil {
			return nil, err
		}
		out.WriteString("---\n")
		out.Write(doc)
	}
}

func (s SecretEnv) add(u *unstructured.Unstructured) error {
	var mastodon func(i int, c map[string]any) bool
	switch u.GetKind() {
	case "Deployment":
		component, _, _ := unstructured.NestedString(u.Object, "spec", "template", "metadata", "labels", LabelComponent)
		if component == "" {
			return nil
		}
		mastodon = func(i int, _ map[string]any) bool { return i == 0 }
	case "Job":
		mastodon = func(_ int, c map[string]any) bool { return slices.Contains(envNames(c), "SECRET_KEY_BASE") }
	default:
		return nil
	}
	containers, found, err := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
	if err != nil || !found {
		return err
	}
	for i, item := range containers {
		c, ok := item.(map[string]any)
		if !ok || !mastodon(i, c) {
			continue
		}
		env, _ := c["env"].([]any)
		has := envNames(c)
		for _, v := range s {
			if slices.Contains(has, v.Name) {
				continue
			}
			env = append(env, map[string]any{"name": v.Name, "valueFrom": map[string]any{
				"secretKeyRef": map[string]any{"name": v.SecretName, "key": v.Key}}})
			has = append(has, v.Name)
		}
		if len(env) > 0 {
			c["env"] = env
		}
	}
	return unstructured.SetNestedSlice(u.Object, containers, "spec", "template", "spec", "containers")
}

// envNames are the names of a container's env entries.
func envNames(c map[string]any) []string {
	env, _ := c["env"].([]any)
	var names []string
	for _, e := range env {
		if m, ok := e.(map[string]any); ok {
			if n, ok := m["name"].(string); ok {
				names = append(names, n)
			}
		}
	}
	return names
}

// chain runs post-renderers one after the other, as `helm install --post-renderer a` piped
// into b would.
type chain []postrender.PostRenderer

func (c chain) Run(rendered *bytes.Buffer) (*bytes.Buffer, error) {
	for _, pr := range c {
		var err error
		if rendered, err = pr.Run(rendered); err != nil {
			return nil, err
		}
	}
	return rendered, nil
}

// then returns a post-renderer that runs pr after first, if any.
func then(first, pr postrender.PostRenderer) postrender.PostRenderer {
	switch f := first.(type) {
	case nil:
		return pr
	case chain:
		return append(slices.Clip(f), pr)
	default:
		return chain{f, pr}
	}
}
