package helm

import (
	"bytes"
	"fmt"
	"slices"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/kube"
	"helm.sh/helm/v3/pkg/releaseutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Keep is a post-renderer that marks the release's objects that hold data with
// helm.sh/resource-policy: keep, the only mark `helm uninstall` respects: every
// PersistentVolumeClaim (the chart's keepAfterDelete writes a hook-delete-policy, which an
// uninstall ignores), and each Secret and ConfigMap named here, which the old stack reads too.
// A level 2 rollback uninstalls the release; what Keep marks outlives it, for a person to
// delete once the data is safe.
type Keep struct {
	Secrets, ConfigMaps []string
}

// Run marks the objects in the rendered manifests.
func (k Keep) Run(rendered *bytes.Buffer) (*bytes.Buffer, error) {
	out, err := eachObject(rendered, k.mark)
	if err != nil {
		return nil, fmt.Errorf("keep post-renderer: %w", err)
	}
	return out, nil
}

func (k Keep) mark(u *unstructured.Unstructured) error {
	switch {
	case u.GetKind() == "PersistentVolumeClaim",
		u.GetKind() == "Secret" && slices.Contains(k.Secrets, u.GetName()),
		u.GetKind() == "ConfigMap" && slices.Contains(k.ConfigMaps, u.GetName()):
	default:
		return nil
	}
	annotations := u.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[kube.ResourcePolicyAnno] = kube.KeepPolicy
	u.SetAnnotations(annotations)
	return nil
}

// WithKeep has the install mark its data-bearing objects with the keep policy (Keep). Hooks are
// left alone: their own delete policy removes them after they ran, whatever they carry.
func WithKeep(k Keep) InstallOption {
	return WithPostRenderer(k)
}

// UninstallList is what uninstalling a release does to the objects of its manifest, each named
// Kind/name.
type UninstallList struct {
	Deletes, Keeps []string
}

// PlanUninstall says what uninstalling the release's last revision deletes and keeps, read from
// its stored manifest as Helm's uninstall reads it (releaseutil.SortManifests, in uninstall
// order). Helm deletes only the objects without a helm.sh/resource-policy annotation: "keep",
// and any other value it does not know, leave the object in place. No release: nil, nil.
func PlanUninstall(cfg *action.Configuration, name string) (*UninstallList, error) {
	rel, err := Status(cfg, name)
	if err != nil || rel == nil {
		return nil, err
	}
	return planUninstall(rel.Manifest)
}

func planUninstall(manifest string) (*UninstallList, error) {
	_, files, err := releaseutil.SortManifests(releaseutil.SplitManifests(manifest), nil, releaseutil.UninstallOrder)
	if err != nil {
		return nil, fmt.Errorf("reading the release's manifest: %w", err)
	}
	list := &UninstallList{}
	for _, f := range files {
		if f.Head == nil || f.Head.Metadata == nil {
			continue
		}
		key := f.Head.Kind + "/" + f.Head.Metadata.Name
		if _, policy := f.Head.Metadata.Annotations[kube.ResourcePolicyAnno]; policy {
			list.Keeps = append(list.Keeps, key)
		} else {
			list.Deletes = append(list.Deletes, key)
		}
	}
	return list, nil
}
