package helm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/yaml"
)

// Manifests are the objects an install of a chart would create.
type Manifests struct {
	// Resources are the release's own objects, in Helm's install order.
	Resources []*unstructured.Unstructured
	// Hooks are the hook objects in the order Helm lists them; their helm.sh/hook annotations
	// say when they run.
	Hooks []*unstructured.Unstructured
}

// Find returns the resource or hook of that kind and name, or nil.
func (m *Manifests) Find(kind, name string) *unstructured.Unstructured {
	for _, obj := range slices.Concat(m.Resources, m.Hooks) {
		if obj.GetKind() == kind && obj.GetName() == name {
			return obj
		}
	}
	return nil
}

// LabelComponent is the chart's label naming a component: web, streaming, sidekiq-<worker>.
// The official chart puts it on each Deployment's selector and pod template, and only on the
// Sidekiq Deployments' own metadata, so components are always read from the pod template.
const LabelComponent = "app.kubernetes.io/component"

// Deployments returns the rendered Deployments by the component label of their pod template.
func (m *Manifests) Deployments() (map[string]*appsv1.Deployment, error) {
	out := map[string]*appsv1.Deployment{}
	for _, u := range m.Resources {
		if u.GetKind() != "Deployment" {
			continue
		}
		d := &appsv1.Deployment{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, d); err != nil {
			return nil, fmt.Errorf("rendered Deployment %s: %w", u.GetName(), err)
		}
		if c := d.Spec.Template.Labels[LabelComponent]; c != "" {
			out[c] = d
		}
	}
	return out, nil
}

// Render renders chrt with values as `helm install --dry-run` would, through Helm's own install
// action and template engine, without a cluster, and with the options Install would get, so
// that what it shows is what Install creates. Errors of the chart, such as a `required` value
// left empty, come back with the chart's message.
func Render(chrt *chart.Chart, values map[string]any, releaseName, namespace string, opts ...InstallOption) (*Manifests, error) {
	install := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	install.DryRun = true
	install.ClientOnly = true
	install.Replace = true
	install.IncludeCRDs = false
	install.ReleaseName = releaseName
	install.Namespace = namespace
	settings := apply(install, opts)

	rel, err := install.Run(chrt, values)
	if err != nil {
		return nil, fmt.Errorf("render chart %s %s as release %s: %w", chrt.Name(), chrt.Metadata.Version, releaseName, err)
	}
	resources, err := decode(rel.Manifest)
	if err != nil {
		return nil, fmt.Errorf("release %s manifest: %w", releaseName, err)
	}
	m := &Manifests{Resources: resources}
	for _, hook := range rel.Hooks {
		manifest := bytes.NewBufferString(hook.Manifest)
		if settings.hooks != nil {
			if manifest, err = settings.hooks.Run(manifest); err != nil {
				return nil, fmt.Errorf("release %s hook %s: %w", releaseName, hook.Path, err)
			}
		}
		objs, err := decode(manifest.String())
		if err != nil {
			return nil, fmt.Errorf("release %s hook %s: %w", releaseName, hook.Path, err)
		}
		m.Hooks = append(m.Hooks, objs...)
	}
	return m, nil
}

// decode reads a stream of YAML documents in order, skipping empty ones.
func decode(manifest string) ([]*unstructured.Unstructured, error) {
	decoder := yaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	var objs []*unstructured.Unstructured
	for {
		var obj map[string]any
		if err := decoder.Decode(&obj); errors.Is(err, io.EOF) {
			return objs, nil
		} else if err != nil {
			return nil, err
		}
		if len(obj) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: obj})
		}
	}
}
