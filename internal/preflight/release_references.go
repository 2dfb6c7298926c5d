package preflight

import (
	"context"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/envparity"
)

// configKeys are the keys of ConfigMaps and Secrets, looked up in the rendered release first
// and then in the cluster, each read once.
type configKeys struct {
	in         Input
	configMaps map[string]*corev1.ConfigMap // nil entry: not found
	secrets    map[string]*corev1.Secret
}

func newConfigKeys(in Input, cms map[string]*corev1.ConfigMap, secrets map[string]*corev1.Secret) *configKeys {
	k := &configKeys{in: in, configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	maps.Copy(k.configMaps, cms)
	maps.Copy(k.secrets, secrets)
	return k
}

func (k *configKeys) configMap(ctx context.Context, name string) (*corev1.ConfigMap, error) {
	if cm, ok := k.configMaps[name]; ok {
		return cm, nil
	}
	cm := &corev1.ConfigMap{}
	err := k.in.Client.Get(ctx, client.ObjectKey{Namespace: k.in.Migration.Namespace, Name: name}, cm)
	if apierrors.IsNotFound(err) {
		cm, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	k.configMaps[name] = cm
	return cm, nil
}

func (k *configKeys) secret(ctx context.Context, name string) (*corev1.Secret, error) {
	if s, ok := k.secrets[name]; ok {
		return s, nil
	}
	s := &corev1.Secret{}
	err := k.in.Client.Get(ctx, client.ObjectKey{Namespace: k.in.Migration.Namespace, Name: name}, s)
	if apierrors.IsNotFound(err) {
		s, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	k.secrets[name] = s
	return s, nil
}

// found returns the ConfigMaps and Secrets looked up so far that exist.
func (k *configKeys) found() (map[string]*corev1.ConfigMap, map[string]*corev1.Secret) {
	cms, secrets := map[string]*corev1.ConfigMap{}, map[string]*corev1.Secret{}
	for n, cm := range k.configMaps {
		if cm != nil {
			cms[n] = cm
		}
	}
	for n, s := range k.secrets {
		if s != nil {
			secrets[n] = s
		}
	}
	return cms, secrets
}

// lookupRefs reads every ConfigMap and Secret the pod references (any container, optional or
// not), so that found() has them for envparity.Effective.
func (k *configKeys) lookupRefs(ctx context.Context, pod corev1.PodSpec) error {
	for _, r := range podRefs(pod) {
		var err error
		if r.secret {
			_, err = k.secret(ctx, r.name)
		} else {
			_, err = k.configMap(ctx, r.name)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// podRef is one reference of a container to a ConfigMap or Secret (key empty for envFrom).
type podRef struct {
	container string
	variable  string // the variable, for env; "" for envFrom
	secret    bool
	name, key string
	optional  bool
}

func (r podRef) kind() string {
	if r.secret {
		return "Secret"
	}
	return "ConfigMap"
}

// podRefs lists the env and envFrom references of the containers and init containers.
func podRefs(pod corev1.PodSpec) []podRef {
	var refs []podRef
	opt := func(b *bool) bool { return b != nil && *b }
	for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
		for _, from := range c.EnvFrom {
			if r := from.ConfigMapRef; r != nil {
				refs = append(refs, podRef{container: c.Name, name: r.Name, optional: opt(r.Optional)})
			}
			if r := from.SecretRef; r != nil {
				refs = append(refs, podRef{container: c.Name, secret: true, name: r.Name, optional: opt(r.Optional)})
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				refs = append(refs, podRef{container: c.Name, variable: e.Name, name: r.Name, key: r.Key, optional: opt(r.Optional)})
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				refs = append(refs, podRef{container: c.Name, variable: e.Name, secret: true, name: r.Name, key: r.Key, optional: opt(r.Optional)})
			}
		}
	}
	return refs
}

// releaseReferences checks that every ConfigMap and Secret key the release's pods (Deployments
// and hook Jobs) need exists, in the cluster or among the objects the chart creates: a missing
// one keeps the pods (or the database Jobs, and with them the install) from starting. Findings
// name the object and key, never a value.
func releaseReferences(ctx context.Context, in Input) ([]v1alpha1.Finding, error) {
	p := in.release(ctx)
	if p.manifests == nil {
		return nil, nil
	}
	pods, err := renderedPods(p.manifests)
	if err != nil {
		return nil, err
	}
	cms, secrets, err := renderedConfig(p.manifests)
	if err != nil {
		return nil, err
	}
	keys := newConfigKeys(in, cms, secrets)

	// One finding per missing object or key, naming every user.
	type missing struct{ kind, name, key string }
	users := map[missing][]string{}
	var order []missing
	for _, pod := range pods {
		for _, r := range podRefs(pod.template.Spec) {
			if r.optional {
				continue
			}
			var exists bool
			var keyList []string
			if r.secret {
				s, err := keys.secret(ctx, r.name)
				if err != nil {
					return nil, err
				}
				if exists = s != nil; exists {
					keyList = envparity.SecretKeys(s)
				}
			} else {
				cm, err := keys.configMap(ctx, r.name)
				if err != nil {
					return nil, err
				}
				if exists = cm != nil; exists {
					keyList = slices.Concat(slices.Collect(maps.Keys(cm.Data)), slices.Collect(maps.Keys(cm.BinaryData)))
				}
			}
			m := missing{kind: r.kind(), name: r.name}
			switch {
			case !exists:
			case r.key != "" && !slices.Contains(keyList, r.key):
				m.key = r.key
			default:
				continue
			}
			user := pod.object + " container " + r.container
			if r.variable != "" {
				user += " (env " + r.variable + ")"
			} else {
				user += " (envFrom)"
			}
			if _, ok := users[m]; !ok {
				order = append(order, m)
			}
			if !slices.Contains(users[m], user) {
				users[m] = append(users[m], user)
			}
		}
	}
	var findings []v1alpha1.Finding
	for _, m := range order {
		by := strings.Join(users[m], ", ")
		if m.key == "" {
			findings = append(findings, finding(m.kind+"/"+m.name,
				"%s %s does not exist in namespace %s, and the chart does not create it, but the release's pods need it: %s; create it, or point spec.release.values at one that exists",
				m.kind, m.name, in.Migration.Namespace, by))
			continue
		}
		findings = append(findings, finding(m.kind+"/"+m.name,
			"%s %s has no key %s, which the release's pods need: %s; add the key, or point spec.release.values at one that has it",
			m.kind, m.name, m.key, by))
	}
	return findings, nil
}
