// Package adoption hands the old stack's objects to a Helm release whose chart gives its objects
// the same names (the InPlace strategy with the chart's names over a Kustomize layout).
//
// Helm adopts an existing object that carries its ownership marks, but its install then patches
// the object to the chart's rendering at once, while the old pods still run on it. So an adopted
// object is installed as it is: the post-renderer puts the stored object, with Helm's marks, in
// place of the rendered one, and the roll steps move it to the release when its component rolls
// (a Service's selector is the traffic switch). ConfigMaps and Secrets get the chart's keys
// added, which the old pods do not read. Adopted objects carry helm.sh/resource-policy: keep, so
// that uninstalling the release (a level 2 rollback) leaves them for the snapshot to restore.
//
// A Deployment is never adopted: its selector cannot change in place. It is set aside instead:
// deleted with its ReplicaSets orphaned, and created again under SetAsideName, which takes the
// ReplicaSet and its running pods back; the release then creates its own under the old name.
package adoption

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Helm's marks of ownership, and its policy that keeps an object when the release goes.
const (
	LabelManagedBy             = "app.kubernetes.io/managed-by"
	ManagedByHelm              = "Helm"
	AnnotationReleaseName      = "meta.helm.sh/release-name"
	AnnotationReleaseNamespace = "meta.helm.sh/release-namespace"
	AnnotationResourcePolicy   = "helm.sh/resource-policy"
	ResourcePolicyKeep         = "keep"
)

// AnnotationSetAsideFrom names, on a set-aside Deployment, the Deployment it was.
const AnnotationSetAsideFrom = "migration.mastodon-operator.io/set-aside-from"

// SetAsideName is the name an old Deployment runs on under once the release takes its name.
func SetAsideName(name string) string { return name + "-previous" }

// Key names an object as Kind/name, as findings and status do.
func Key(u *unstructured.Unstructured) string { return u.GetKind() + "/" + u.GetName() }

// Owned reports whether an object carries Helm's ownership marks for the release.
func Owned(o metav1.Object, release, namespace string) bool {
	return o.GetLabels()[LabelManagedBy] == ManagedByHelm && o.GetAnnotations()[AnnotationReleaseName] == release &&
		o.GetAnnotations()[AnnotationReleaseNamespace] == namespace
}

// Mark adds Helm's ownership marks for the release to u, so that Helm's install adopts it
// rather than refusing it; it reports whether anything changed.
func Mark(u *unstructured.Unstructured, release, namespace string) bool {
	if Owned(u, release, namespace) {
		return false
	}
	labels := u.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelManagedBy] = ManagedByHelm
	u.SetLabels(labels)
	annotations := u.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[AnnotationReleaseName] = release
	annotations[AnnotationReleaseNamespace] = namespace
	u.SetAnnotations(annotations)
	return true
}

// Form is what the release installs in place of rendered for an object it adopts: the stored
// object as it was, with Helm's marks and the keep policy, and for a ConfigMap or Secret the
// rendered keys it lacks (the release's pods read them; the old pods never look).
func Form(stored, rendered *unstructured.Unstructured, release, namespace string) (*unstructured.Unstructured, error) {
	out := stored.DeepCopy()
	out.SetNamespace(namespace)
	Mark(out, release, namespace)
	annotations := out.GetAnnotations()
	annotations[AnnotationResourcePolicy] = ResourcePolicyKeep
	out.SetAnnotations(annotations)
	if !isConfig(stored) {
		return out, nil
	}
	have, want, err := keys(stored, rendered)
	if err != nil {
		return nil, err
	}
	for k, v := range want {
		if _, ok := have[k]; ok {
			continue
		}
		if stored.GetKind() == "Secret" {
			v = base64.StdEncoding.EncodeToString([]byte(v))
		}
		if err := unstructured.SetNestedField(out.Object, v, "data", k); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// KeyConflicts lists the keys a ConfigMap or Secret has in both forms with different values,
// sorted: adopting it would change what the old pods read there. Values are never returned.
func KeyConflicts(stored, rendered *unstructured.Unstructured) ([]string, error) {
	if !isConfig(stored) {
		return nil, nil
	}
	have, want, err := keys(stored, rendered)
	if err != nil {
		return nil, err
	}
	var out []string
	for k, v := range want {
		if old, ok := have[k]; ok && old != v {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out, nil
}

func isConfig(u *unstructured.Unstructured) bool {
	return u.GroupVersionKind().Group == "" && (u.GetKind() == "ConfigMap" || u.GetKind() == "Secret")
}

// keys returns the keys and plain values of both forms of a ConfigMap or Secret.
func keys(stored, rendered *unstructured.Unstructured) (have, want map[string]string, err error) {
	if have, err = data(stored); err != nil {
		return nil, nil, err
	}
	if want, err = data(rendered); err != nil {
		return nil, nil, err
	}
	return have, want, nil
}

// data returns the keys of a ConfigMap (data) or Secret (data decoded, then stringData, which
// the API server merges over data) with their plain values.
func data(u *unstructured.Unstructured) (map[string]string, error) {
	out := map[string]string{}
	raw, _, err := unstructured.NestedStringMap(u.Object, "data")
	if err != nil {
		return nil, fmt.Errorf("%s: data: %w", Key(u), err)
	}
	for k, v := range raw {
		if u.GetKind() == "Secret" {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return nil, fmt.Errorf("%s: key %s is not base64", Key(u), k)
			}
			v = string(b)
		}
		out[k] = v
	}
	if u.GetKind() == "Secret" {
		plain, _, err := unstructured.NestedStringMap(u.Object, "stringData")
		if err != nil {
			return nil, fmt.Errorf("%s: stringData: %w", Key(u), err)
		}
		for k, v := range plain {
			out[k] = v
		}
	}
	return out, nil
}

// PostRenderer installs the adopted objects in their Form: Helm passes it the rendered
// manifests (hooks excluded), and stores and applies what it returns.
type PostRenderer struct {
	// Stored are the adopted objects as the snapshot holds them, by Key.
	Stored             map[string]*unstructured.Unstructured
	Release, Namespace string
}

// Run replaces each rendered object that is adopted by its Form.
func (p PostRenderer) Run(rendered *bytes.Buffer) (*bytes.Buffer, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(rendered, 4096)
	out := &bytes.Buffer{}
	for {
		obj := map[string]any{}
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("adoption post-renderer: %w", err)
		}
		if len(obj) == 0 {
			continue // an empty document, such as a template that renders nothing
		}
		u := &unstructured.Unstructured{Object: obj}
		if stored, ok := p.Stored[Key(u)]; ok {
			var err error
			if u, err = Form(stored, u, p.Release, p.Namespace); err != nil {
				return nil, err
			}
		}
		doc, err := yaml.Marshal(u.Object)
		if err != nil {
			return nil, err
		}
		out.WriteString("---\n")
		out.Write(doc)
	}
	return out, nil
}
