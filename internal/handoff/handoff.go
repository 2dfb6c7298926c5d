// Package handoff writes what a GitOps repository needs once a migration has completed: the
// release's values, a Flux HelmRelease and HelmRepository and an Argo CD Application equivalent
// to the release, and which of the repository's Kustomize objects to delete and which to keep.
// Every document is built from maps and marshalled, never from a text template.
package handoff

import (
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/preflight"
	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
)

// The keys of the hand-off ConfigMap; `kubectl mastodon handoff` writes each as a file.
const (
	KeyReadme     = "README.txt"
	KeyValues     = "values.yaml"
	KeyFlux       = "flux.yaml"
	KeyArgoCD     = "argocd-application.yaml"
	KeyRepository = "repository.yaml"
	KeyKept       = "kept-objects.yaml"
)

// MaxBytes bounds the ConfigMap's data, under the API server's 1 MiB object limit with room for
// its metadata.
const MaxBytes = 900 * 1024

// Input is what the hand-off is built from.
type Input struct {
	Migration *v1alpha1.MastodonMigration
	// ChartVersion is the installed chart's version (status.release.chartVersion), which may
	// pin what spec.release.chart.version left as a range.
	ChartVersion string
	// Values are the release's full values: what the install was given before the operator
	// set any replicas to 0.
	Values map[string]any
	// SecretEnv are the variables the operator adds from Secret keys by a post-renderer.
	SecretEnv []v1alpha1.SecretEnvVar
	// Deployments are the release's Deployments by component, for the post-renderer patches
	// that carry SecretEnv.
	Deployments map[string]*appsv1.Deployment
	// Snapshot holds the old stack's objects as they were before the migration; Live the same
	// objects as they are now, by Kind/Name (missing: deleted).
	Snapshot []*unstructured.Unstructured
	Live     map[string]*unstructured.Unstructured
}

// Entry is one object of the repository and what to do with it.
type Entry struct {
	Object string `json:"object"`
	Why    string `json:"why"`
}

// Repository says what to do with the Kustomize objects the migration knew about.
type Repository struct {
	// Delete: the release replaces them or owns them now.
	Delete []Entry `json:"delete"`
	// KeepAsNow: the migration changed them (the traffic switch, the HPAs); commit them as in
	// kept-objects.yaml, or the next sync undoes the switch.
	KeepAsNow []Entry `json:"keepAsNow"`
	// KeepUnchanged: the migration did not change them (Secrets, ConfigMaps the release may read,
	// objects that are not Mastodon).
	KeepUnchanged []Entry `json:"keepUnchanged"`
}

// Build returns the ConfigMap's data.
func Build(in Input) (map[string]string, error) {
	m := in.Migration
	repo := classify(in)
	var kept []string
	for _, e := range repo.KeepAsNow {
		live := in.Live[e.Object]
		if live == nil || live.GetKind() == "Secret" {
			continue // a Secret's body never leaves the cluster through the hand-off
		}
		clean := Clean(live)
		doc, err := yaml.Marshal(clean.Object)
		if err != nil {
			return nil, err
		}
		kept = append(kept, string(doc))
	}
	values, err := yaml.Marshal(in.Values)
	if err != nil {
		return nil, err
	}
	release, err := HelmRelease(m, in.ChartVersion, in.Values, in.SecretEnv, in.Deployments)
	if err != nil {
		return nil, err
	}
	flux, err := marshalAll(HelmRepository(m), release)
	if err != nil {
		return nil, err
	}
	argo, err := marshalAll(Application(m, in.ChartVersion, in.Values))
	if err != nil {
		return nil, err
	}
	repoDoc, err := yaml.Marshal(repo)
	if err != nil {
		return nil, err
	}
	data := map[string]string{
		KeyValues:     string(values),
		KeyFlux:       flux,
		KeyArgoCD:     argo,
		KeyRepository: string(repoDoc),
		KeyKept:       strings.Join(kept, "---\n"),
	}
	readme := readme(m, in, repo)
	if size(data)+len(readme) > MaxBytes {
		delete(data, KeyKept)
		readme += fmt.Sprintf("\nCUT: %s was left out to keep this ConfigMap under %d KiB; read those objects from the cluster (kubectl get -o yaml).\n",
			KeyKept, MaxBytes/1024)
	}
	if size(data)+len(readme) > MaxBytes {
		return nil, fmt.Errorf("the hand-off needs more than %d KiB even without %s: the values are too large for a ConfigMap", MaxBytes/1024, KeyKept)
	}
	data[KeyReadme] = readme
	return data, nil
}

func size(data map[string]string) int {
	n := 0
	for k, v := range data {
		n += len(k) + len(v)
	}
	return n
}

func marshalAll(docs ...map[string]any) (string, error) {
	parts := make([]string, len(docs))
	for i, d := range docs {
		b, err := yaml.Marshal(d)
		if err != nil {
			return "", err
		}
		parts[i] = string(b)
	}
	return strings.Join(parts, "---\n"), nil
}

// classify sorts the snapshot's objects into what the repository deletes and keeps.
func classify(in Input) Repository {
	m := in.Migration
	adopted := map[string]bool{}
	if a := m.Status.Adoption; a != nil {
		for _, k := range a.Adopted {
			adopted[k] = true
		}
	}
	source := map[string]bool{}
	for _, d := range preflight.SourceDeployments(m) {
		source["Deployment/"+d.Name] = true
	}
	var repo Repository
	for _, stored := range in.Snapshot {
		key := stored.GetKind() + "/" + stored.GetName()
		live := in.Live[key]
		switch {
		case source[key]:
			repo.Delete = append(repo.Delete, Entry{key, fmt.Sprintf("old stack: release %s's Deployment does its work (the cluster keeps it at 0 replicas, or deleted it with cleanup.deleteSource)", m.Spec.Release.Name)})
		case adopted[key]:
			repo.Delete = append(repo.Delete, Entry{key, fmt.Sprintf("release %s adopted it: Helm manages it now", m.Spec.Release.Name)})
		case live == nil:
			repo.Delete = append(repo.Delete, Entry{key, "no longer in the cluster"})
		default:
			if changed := snapshot.Compare(live, stored); len(changed) > 0 {
				repo.KeepAsNow = append(repo.KeepAsNow, Entry{key, "the migration changed " + strings.Join(changed, ", ") + ": commit it as in " + KeyKept})
				continue
			}
			repo.KeepUnchanged = append(repo.KeepUnchanged, Entry{key, "unchanged by the migration"})
		}
	}
	byObject := func(a, b Entry) int { return strings.Compare(a.Object, b.Object) }
	slices.SortFunc(repo.Delete, byObject)
	slices.SortFunc(repo.KeepAsNow, byObject)
	slices.SortFunc(repo.KeepUnchanged, byObject)
	return repo
}

// Clean is an object as a repository holds it: no server-set metadata, annotations of
// controllers or status (snapshot.Sanitize), and no last-applied annotation.
func Clean(u *unstructured.Unstructured) *unstructured.Unstructured {
	out := snapshot.Sanitize(u)
	ann := out.GetAnnotations()
	delete(ann, "kubectl.kubernetes.io/last-applied-configuration")
	if len(ann) == 0 {
		unstructured.RemoveNestedField(out.Object, "metadata", "annotations")
	} else {
		out.SetAnnotations(ann)
	}
	return out
}

func readme(m *v1alpha1.MastodonMigration, in Input, repo Repository) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Hand-off of migration %s/%s: release %s (chart %s %s) now serves Mastodon.\n", m.Namespace, m.Name,
		m.Spec.Release.Name, m.Spec.Release.Chart.Name, in.ChartVersion)
	fmt.Fprintf(&b, "Repository: delete %d object(s), commit %d as they now are (%s), keep %d unchanged (%s).\n",
		len(repo.Delete), len(repo.KeepAsNow), KeyKept, len(repo.KeepUnchanged), KeyRepository)
	fmt.Fprintf(&b, "Then commit %s (Flux) or %s (Argo CD), both with %s's values.\n", KeyFlux, KeyArgoCD, KeyValues)
	b.WriteString("The values are the release's full values: never upgrade the release with --reuse-values (Helm stores the 0 replicas the operator installed some workers with).\n")
	if len(in.SecretEnv) > 0 {
		names := make([]string, len(in.SecretEnv))
		for i, v := range in.SecretEnv {
			names[i] = fmt.Sprintf("%s (Secret %s key %s)", v.Name, v.SecretName, v.Key)
		}
		fmt.Fprintf(&b, "The operator adds %s to the Mastodon containers by a post-renderer. The HelmRelease carries them as postRenderers patches of the Deployments; "+
			"Helm post-renders no hook, so the hook Jobs (db-migrate) and the Argo CD Application have no equivalent: give them through the chart's values or a Secret the chart reads before the next upgrade.\n",
			strings.Join(names, ", "))
	}
	return b.String()
}
