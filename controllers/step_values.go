package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/values"
)

// Keys of the generated values' ConfigMap: the values, the notes a person should read before
// the install (what the chart will not carry over, or takes from its defaults), and the
// variables the operator adds from Secret keys itself (secretEnv: names and keys, no values).
const (
	generatedValuesKey    = "values.yaml"
	generatedNotesKey     = "notes.txt"
	generatedSecretEnvKey = "secretEnv.yaml"
)

func generatedValuesName(m *v1alpha1.MastodonMigration) string { return m.Name + "-generated-values" }

// generateValues derives chart values from the source stack (the runbook's configuration
// mapping) and writes them to a ConfigMap, where a person can read them before the install. The
// install reads them back from there, so what was reviewed is what is installed.
func (r *MastodonMigrationReconciler) generateValues(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	if !m.Spec.Release.GenerateValues {
		return outcome{state: v1alpha1.StepSkipped, message: "spec.release.generateValues is false"}, nil
	}
	name := generatedValuesName(m)
	existing := &corev1.ConfigMap{}
	err := r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: name}, existing)
	if err == nil {
		releaseStatus(m).GeneratedValues = name
		return outcome{state: v1alpha1.StepSucceeded, message: valuesMessage(name, existing.Data[generatedNotesKey])}, nil
	}
	if !apierrors.IsNotFound(err) {
		return outcome{}, err
	}
	gen, err := r.generate(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	doc, err := yaml.Marshal(gen.Values)
	if err != nil {
		return outcome{}, err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: m.Namespace, Name: name, Labels: map[string]string{LabelMigration: m.Name}},
		Data:       map[string]string{generatedValuesKey: string(doc)},
	}
	if len(gen.Notes) > 0 {
		lines := make([]string, len(gen.Notes))
		for i, n := range gen.Notes {
			lines[i] = n.String()
		}
		cm.Data[generatedNotesKey] = strings.Join(lines, "\n") + "\n"
	}
	if len(gen.SecretEnv) > 0 {
		env, err := yaml.Marshal(gen.SecretEnv)
		if err != nil {
			return outcome{}, err
		}
		cm.Data[generatedSecretEnvKey] = string(env)
	}
	if err := r.Create(ctx, cm); err != nil && !apierrors.IsAlreadyExists(err) {
		return outcome{}, err
	}
	releaseStatus(m).GeneratedValues = name
	return outcome{state: v1alpha1.StepSucceeded, message: valuesMessage(name, cm.Data[generatedNotesKey])}, nil
}

// valuesMessage says where the generated values are and what their notes are about, by kind
// (each line of the notes starts with its kind): the notes themselves stay in the ConfigMap,
// where a person reads them whole.
func valuesMessage(configMap, notes string) string {
	msg := "values generated from the source stack into ConfigMap " + configMap
	counts := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(notes), "\n") {
		if kind, _, ok := strings.Cut(line, ":"); ok {
			counts[kind]++
		}
	}
	if len(counts) == 0 {
		return msg
	}
	var kinds []string
	total := 0
	for _, kind := range slices.Sorted(maps.Keys(counts)) {
		kinds = append(kinds, fmt.Sprintf("%d %s", counts[kind], kind))
		total += counts[kind]
	}
	return fmt.Sprintf("%s; %d notes to read before the install (%s): kubectl get configmap %s -o jsonpath='{.data.%s}'",
		msg, total, strings.Join(kinds, ", "), configMap, strings.ReplaceAll(generatedNotesKey, ".", "\\."))
}

// generate derives chart values from the source stack as it runs now. Deterministic, so
// preflight's preview renders what the GenerateValues step then writes down.
func (r *MastodonMigrationReconciler) generate(ctx context.Context, m *v1alpha1.MastodonMigration) (values.Generated, error) {
	src, err := r.sourceStack(ctx, m)
	if err != nil {
		return values.Generated{}, err
	}
	in := values.Source{Web: src.web, Streaming: src.streaming, Sidekiq: src.sidekiq, Ingress: m.Spec.Source.Ingress,
		ConfigMaps: map[string]*corev1.ConfigMap{}, Secrets: map[string]*corev1.Secret{}}
	for _, x := range m.Spec.Source.ExtraResources {
		if x.Kind != "HorizontalPodAutoscaler" {
			continue
		}
		hpa := &autoscalingv2.HorizontalPodAutoscaler{}
		switch err := r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: x.Name}, hpa); {
		case apierrors.IsNotFound(err): // preflight's ExtraResources finding
		case err != nil:
			return values.Generated{}, fmt.Errorf("reading HorizontalPodAutoscaler %s: %w", x.Name, err)
		default:
			in.HPAs = append(in.HPAs, hpa)
		}
	}
	configMaps, secrets := referencedConfig(src)
	for _, n := range configMaps {
		cm := &corev1.ConfigMap{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: n}, cm); err != nil {
			return values.Generated{}, fmt.Errorf("reading ConfigMap %s: %w", n, err)
		}
		in.ConfigMaps[n] = cm
	}
	for _, n := range secrets {
		s := &corev1.Secret{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: n}, s); err != nil {
			return values.Generated{}, fmt.Errorf("reading Secret %s: %w", n, err)
		}
		in.Secrets[n] = s
	}
	return values.GenerateWithNotes(in)
}

// previewValues are the values the release would get if it were installed now: generated in
// memory rather than read from the GenerateValues ConfigMap, which preflight comes before.
func (r *MastodonMigrationReconciler) previewValues(ctx context.Context, m *v1alpha1.MastodonMigration) (map[string]any, error) {
	var generated map[string]any
	if m.Spec.Release.GenerateValues {
		gen, err := r.generate(ctx, m)
		if err != nil {
			return nil, err
		}
		generated = gen.Values
	}
	return r.mergeValues(ctx, m, generated)
}

// previewSecretEnv is the secretEnv the release would get if it were installed now, the
// generated part generated in memory (see previewValues).
func (r *MastodonMigrationReconciler) previewSecretEnv(ctx context.Context, m *v1alpha1.MastodonMigration) ([]v1alpha1.SecretEnvVar, error) {
	var generated []v1alpha1.SecretEnvVar
	if m.Spec.Release.GenerateValues {
		gen, err := r.generate(ctx, m)
		if err != nil {
			return nil, err
		}
		generated = gen.SecretEnv
	}
	return withSecretEnv(generated, m.Spec.Release.SecretEnv), nil
}

// releaseSecretEnv is the variables the operator adds to the release's Mastodon containers and
// hook Jobs from Secret keys: the generated ones, read back from the GenerateValues ConfigMap
// as releaseValues reads the values, and spec.release.secretEnv.
func (r *MastodonMigrationReconciler) releaseSecretEnv(ctx context.Context, m *v1alpha1.MastodonMigration) ([]v1alpha1.SecretEnvVar, error) {
	var generated []v1alpha1.SecretEnvVar
	if m.Spec.Release.GenerateValues {
		cm := &corev1.ConfigMap{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: generatedValuesName(m)}, cm); err != nil {
			return nil, fmt.Errorf("reading the generated secretEnv from ConfigMap %s: %w", generatedValuesName(m), err)
		}
		if doc := cm.Data[generatedSecretEnvKey]; doc != "" {
			if err := yaml.Unmarshal([]byte(doc), &generated); err != nil {
				return nil, fmt.Errorf("ConfigMap %s key %s: %w", cm.Name, generatedSecretEnvKey, err)
			}
		}
	}
	return withSecretEnv(generated, m.Spec.Release.SecretEnv), nil
}

// withSecretEnv is the generated secretEnv with spec.release.secretEnv over it: an entry of the
// spec replaces a generated one of the same name.
func withSecretEnv(generated, spec []v1alpha1.SecretEnvVar) []v1alpha1.SecretEnvVar {
	out := slices.Clone(spec)
	for _, g := range generated {
		if !slices.ContainsFunc(spec, func(s v1alpha1.SecretEnvVar) bool { return s.Name == g.Name }) {
			out = append(out, g)
		}
	}
	return out
}

// releaseValues merges, in order: the generated values, spec.release.values, then each
// spec.release.valuesFrom document.
func (r *MastodonMigrationReconciler) releaseValues(ctx context.Context, m *v1alpha1.MastodonMigration) (map[string]any, error) {
	var generated map[string]any
	if m.Spec.Release.GenerateValues {
		var err error
		if generated, err = r.valuesDocument(ctx, m.Namespace, "ConfigMap", generatedValuesName(m), generatedValuesKey, false); err != nil {
			return nil, err
		}
	}
	return r.mergeValues(ctx, m, generated)
}

// mergeValues layers spec.release.values, then each spec.release.valuesFrom document, over the
// generated values.
func (r *MastodonMigrationReconciler) mergeValues(ctx context.Context, m *v1alpha1.MastodonMigration, generated map[string]any) (map[string]any, error) {
	var layers []map[string]any
	if generated != nil {
		layers = append(layers, generated)
	}
	if v := m.Spec.Release.Values; v != nil && len(v.Raw) > 0 {
		doc := map[string]any{}
		if err := json.Unmarshal(v.Raw, &doc); err != nil {
			return nil, fmt.Errorf("spec.release.values: %w", err)
		}
		layers = append(layers, doc)
	}
	for _, ref := range m.Spec.Release.ValuesFrom {
		doc, err := r.valuesDocument(ctx, m.Namespace, ref.Kind, ref.Name, ref.Key, ref.Optional)
		if err != nil {
			return nil, err
		}
		layers = append(layers, doc)
	}
	return values.Merge(layers...), nil
}

// valuesDocument reads one YAML values document from a ConfigMap or Secret key.
func (r *MastodonMigrationReconciler) valuesDocument(ctx context.Context, ns, kind, name, key string, optional bool) (map[string]any, error) {
	var raw []byte
	var found bool
	switch kind {
	case "Secret":
		s := &corev1.Secret{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s); err != nil && !(optional && apierrors.IsNotFound(err)) {
			return nil, fmt.Errorf("reading values from Secret %s: %w", name, err)
		}
		raw, found = s.Data[key]
	default:
		cm := &corev1.ConfigMap{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, cm); err != nil && !(optional && apierrors.IsNotFound(err)) {
			return nil, fmt.Errorf("reading values from ConfigMap %s: %w", name, err)
		}
		var s string
		s, found = cm.Data[key]
		raw = []byte(s)
	}
	if !found {
		if optional {
			return map[string]any{}, nil
		}
		return nil, fmt.Errorf("%s %s has no key %s", kind, name, key)
	}
	doc := map[string]any{}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		// The error of a values document never quotes it: it may hold secrets.
		return nil, fmt.Errorf("%s %s key %s is not a YAML values document", kind, name, key)
	}
	return doc, nil
}
