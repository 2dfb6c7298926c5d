// Package envparity works out the environment a container gets, the way the kubelet builds it
// from the pod spec and the ConfigMaps and Secrets it references, and compares the environments
// of the old (Kustomize) and new (chart) pods.
//
// Secret values are read only to compare them: they never appear in a Value, a Difference or an
// error. A Secret-sourced variable prints as "secret <name>/<key>".
//
// What the effective environment leaves out: the image's own ENV (Mastodon's images set
// RAILS_ENV, NODE_ENV, BIND and PATH, among others), the Service link variables the kubelet adds
// when enableServiceLinks is on, and the runtime values of fieldRef and resourceFieldRef
// variables, which are given by their selector.
package envparity

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Ref names a key of a ConfigMap or Secret in the pod's namespace.
type Ref struct{ Name, Key string }

// Value is where one variable of the effective environment comes from, and what it is when
// that may be shown.
type Value struct {
	// Literal is the value of a variable given in the pod spec, after $(VAR) expansion, or the
	// value read from a ConfigMap (FromConfigMap is then set). Empty for the other sources.
	Literal string
	// FromSecret is the Secret key the value comes from (secretKeyRef or envFrom secretRef).
	// The value itself is never copied here.
	FromSecret *Ref
	// FromConfigMap is the ConfigMap key the value comes from (configMapKeyRef or envFrom
	// configMapRef); Literal holds the value.
	FromConfigMap *Ref
	// FieldRef is the selector of a value the kubelet fills in at run time: a fieldRef's field
	// path ("metadata.name"), "resourceFieldRef:<container>/<resource>[/<divisor>]", or
	// "fileKeyRef:<volume>/<path>/<key>".
	FieldRef string
	// Missing is set when a non-optional configMapKeyRef or secretKeyRef names a ConfigMap,
	// Secret or key that does not exist: the kubelet will not start the container.
	Missing bool
}

// String describes the value without showing a secret value.
func (v Value) String() string {
	switch {
	case v.FromSecret != nil:
		s := "secret " + v.FromSecret.Name + "/" + v.FromSecret.Key
		if v.Missing {
			s += " (missing)"
		}
		return s
	case v.FromConfigMap != nil && v.Missing:
		return "configmap " + v.FromConfigMap.Name + "/" + v.FromConfigMap.Key + " (missing)"
	case v.FromConfigMap != nil:
		return strconv.Quote(v.Literal) + " (configmap " + v.FromConfigMap.Name + "/" + v.FromConfigMap.Key + ")"
	case v.FieldRef != "":
		return "fieldRef " + v.FieldRef
	default:
		return strconv.Quote(v.Literal)
	}
}

// expandable reports whether the kubelet's $(VAR) expansion of a later literal would see the
// value as Effective knows it: values read from Secrets stay hidden and run-time values are
// unknown, so references to them are left as $(VAR).
func (v Value) expandable() bool {
	return v.FromSecret == nil && v.FieldRef == "" && !v.Missing
}

// Effective resolves the environment of the container (or init container) named container in
// pod, as the kubelet does: the envFrom sources in order (with their prefix; keys that are not
// valid variable names are skipped, later sources win), then the env entries in order, each
// overriding what came before; $(VAR) in a literal value expands to the variables defined
// before it (a reference to a Secret-sourced, run-time or undefined variable stays as
// written). An optional reference to a missing ConfigMap, Secret or key is skipped (a variable
// of that name from envFrom stays); a non-optional one gives a Value with Missing set, or, for envFrom, an error, since the
// variables it would have given are unknown and the container cannot start.
//
// configMaps and secrets are keyed by name and are those of the pod's namespace. Of a Secret
// only the key names are read (Data and StringData).
func Effective(pod corev1.PodSpec, container string, configMaps map[string]*corev1.ConfigMap, secrets map[string]*corev1.Secret) (map[string]Value, error) {
	c := findContainer(pod, container)
	if c == nil {
		return nil, fmt.Errorf("pod has no container %q", container)
	}
	env := map[string]Value{}
	for i, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			name := from.ConfigMapRef.Name
			cm, ok := configMaps[name]
			if !ok || cm == nil {
				if isOptional(from.ConfigMapRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("container %s: envFrom[%d]: ConfigMap %s not found: the container cannot start", container, i, name)
			}
			for key, val := range cm.Data {
				if varName := from.Prefix + key; validName(varName) {
					env[varName] = Value{Literal: val, FromConfigMap: &Ref{Name: name, Key: key}}
				}
			}
		case from.SecretRef != nil:
			name := from.SecretRef.Name
			secret, ok := secrets[name]
			if !ok || secret == nil {
				if isOptional(from.SecretRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("container %s: envFrom[%d]: Secret %s not found: the container cannot start", container, i, name)
			}
			for _, key := range SecretKeys(secret) {
				if varName := from.Prefix + key; validName(varName) {
					env[varName] = Value{FromSecret: &Ref{Name: name, Key: key}}
				}
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = Value{Literal: expand(e.Value, env)}
			continue
		}
		src := e.ValueFrom
		switch {
		case src.ConfigMapKeyRef != nil:
			ref := &Ref{Name: src.ConfigMapKeyRef.Name, Key: src.ConfigMapKeyRef.Key}
			var val string
			cm, ok := configMaps[ref.Name]
			if ok && cm != nil {
				val, ok = cm.Data[ref.Key]
			}
			switch {
			case ok:
				env[e.Name] = Value{Literal: val, FromConfigMap: ref}
			case isOptional(src.ConfigMapKeyRef.Optional):
				// The kubelet skips the entry: a variable of the same name from envFrom stays.
			default:
				env[e.Name] = Value{FromConfigMap: ref, Missing: true}
			}
		case src.SecretKeyRef != nil:
			ref := &Ref{Name: src.SecretKeyRef.Name, Key: src.SecretKeyRef.Key}
			secret, ok := secrets[ref.Name]
			ok = ok && secret != nil && hasKey(secret, ref.Key)
			switch {
			case ok:
				env[e.Name] = Value{FromSecret: ref}
			case isOptional(src.SecretKeyRef.Optional):
			default:
				env[e.Name] = Value{FromSecret: ref, Missing: true}
			}
		case src.FieldRef != nil:
			env[e.Name] = Value{FieldRef: src.FieldRef.FieldPath}
		case src.ResourceFieldRef != nil:
			r := src.ResourceFieldRef
			containerName := r.ContainerName
			if containerName == "" {
				containerName = container
			}
			sel := "resourceFieldRef:" + containerName + "/" + r.Resource
			if !r.Divisor.IsZero() {
				sel += "/" + r.Divisor.String()
			}
			env[e.Name] = Value{FieldRef: sel}
		case src.FileKeyRef != nil:
			// Whether the file holds the key is only known at run time.
			r := src.FileKeyRef
			env[e.Name] = Value{FieldRef: "fileKeyRef:" + r.VolumeName + "/" + r.Path + "/" + r.Key}
		default:
			return nil, fmt.Errorf("container %s: env %s: valueFrom names no source", container, e.Name)
		}
	}
	return env, nil
}

func findContainer(pod corev1.PodSpec, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{pod.Containers, pod.InitContainers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

func isOptional(b *bool) bool { return b != nil && *b }

// validName is the kubelet's test of a variable name from envFrom (relaxed validation: any
// printable ASCII but '=').
func validName(name string) bool {
	return len(validation.IsRelaxedEnvVarName(name)) == 0
}

// SecretKeys lists a Secret's keys, sorted: those of Data and of StringData, which the API
// server folds into Data on write.
func SecretKeys(s *corev1.Secret) []string {
	keys := map[string]bool{}
	for k := range s.Data {
		keys[k] = true
	}
	for k := range s.StringData {
		keys[k] = true
	}
	return slices.Sorted(maps.Keys(keys))
}

func hasKey(s *corev1.Secret, key string) bool {
	if _, ok := s.StringData[key]; ok {
		return true
	}
	_, ok := s.Data[key]
	return ok
}

// secretValue is the value of a Secret key, StringData winning over Data as on write.
func secretValue(secrets map[string]*corev1.Secret, ref *Ref) ([]byte, bool) {
	s, ok := secrets[ref.Name]
	if !ok || s == nil {
		return nil, false
	}
	if v, ok := s.StringData[ref.Key]; ok {
		return []byte(v), true
	}
	v, ok := s.Data[ref.Key]
	return v, ok
}

// expand is the kubelet's $(VAR) expansion: $$ is a literal $, $(NAME) is replaced by the
// variable when it is defined and its value can be shown, and anything else stays as written.
func expand(input string, env map[string]Value) string {
	if !strings.Contains(input, "$") {
		return input
	}
	var buf strings.Builder
	checkpoint := 0
	for cursor := 0; cursor < len(input); cursor++ {
		if input[cursor] != '$' || cursor+1 >= len(input) {
			continue
		}
		buf.WriteString(input[checkpoint:cursor])
		rest := input[cursor+1:]
		advance := 1
		switch rest[0] {
		case '$':
			buf.WriteByte('$')
		case '(':
			end := strings.IndexByte(rest, ')')
			if end < 0 {
				buf.WriteString("$(")
				break
			}
			name := rest[1:end]
			if v, ok := env[name]; ok && v.expandable() {
				buf.WriteString(v.Literal)
			} else {
				buf.WriteString("$(" + name + ")")
			}
			advance = end + 1
		default:
			buf.WriteByte('$')
			buf.WriteByte(rest[0])
		}
		cursor += advance
		checkpoint = cursor + 1
	}
	buf.WriteString(input[checkpoint:])
	return buf.String()
}

// Kinds of Difference.
const (
	// KindMissing: the old container has the variable, the new one does not.
	KindMissing = "Missing"
	// KindAdded: the new container has a variable the old one did not.
	KindAdded = "Added"
	// KindChanged: both have it, with different values (or one of them cannot be resolved).
	KindChanged = "Changed"
)

// Difference is one variable that differs between two effective environments. Old and New
// are printable: a Secret-sourced value prints as "secret <name>/<key>", followed in a Changed
// difference by "(different value)", "(same value)" or "(value unknown)". A value that moved
// into or out of a Secret is reported even when it is the same (marked "(same value)"), and
// its plain side then shows where it comes from ("literal", "configmap <name>/<key>"), not the
// value. Old is empty for Added, New for Missing.
type Difference struct {
	Name string
	Kind string
	Old  string
	New  string
	// OldValue and NewValue are the values compared, zero on the side that lacks the variable;
	// a FromSecret one holds the key, never the value.
	OldValue, NewValue Value
	// SameValue: a Changed difference whose value is the same, moved into or out of a Secret.
	SameValue bool
}

func (d Difference) String() string {
	switch d.Kind {
	case KindMissing:
		return fmt.Sprintf("%s: missing (was %s)", d.Name, d.Old)
	case KindAdded:
		return fmt.Sprintf("%s: added (%s)", d.Name, d.New)
	default:
		return fmt.Sprintf("%s: changed from %s to %s", d.Name, d.Old, d.New)
	}
}

// Diff compares two effective environments (from Effective) and returns their differences
// sorted by name. Values are compared by what the process would see: a literal and a
// ConfigMap value are equal when their strings are; a Secret-sourced value is compared by the
// bytes of the Secret key in secrets (which holds the Secrets of both sides, by name), so the
// same value under another Secret or key is no difference; run-time values are equal when
// their selectors are; a missing reference equals only the same missing reference. Secret
// values are never printed.
func Diff(old, new map[string]Value, secrets map[string]*corev1.Secret) []Difference {
	var diffs []Difference
	for _, name := range slices.Sorted(maps.Keys(old)) {
		o := old[name]
		n, ok := new[name]
		if !ok {
			diffs = append(diffs, Difference{Name: name, Kind: KindMissing, Old: o.String(), OldValue: o})
			continue
		}
		if d, differ := compare(name, o, n, secrets); differ {
			diffs = append(diffs, d)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(new)) {
		if _, ok := old[name]; !ok {
			diffs = append(diffs, Difference{Name: name, Kind: KindAdded, New: new[name].String(), NewValue: new[name]})
		}
	}
	slices.SortFunc(diffs, func(a, b Difference) int { return strings.Compare(a.Name, b.Name) })
	return diffs
}

// resolved is a value as the process would see it: known is false when it cannot be told
// (a missing reference, a missing Secret, a run-time value).
type resolved struct {
	value  []byte
	known  bool
	secret bool
}

func resolve(v Value, secrets map[string]*corev1.Secret) resolved {
	switch {
	case v.Missing:
		return resolved{}
	case v.FromSecret != nil:
		val, ok := secretValue(secrets, v.FromSecret)
		return resolved{value: val, known: ok, secret: true}
	case v.FieldRef != "":
		return resolved{}
	default:
		return resolved{value: []byte(v.Literal), known: true}
	}
}

func compare(name string, o, n Value, secrets map[string]*corev1.Secret) (Difference, bool) {
	ro, rn := resolve(o, secrets), resolve(n, secrets)
	switch {
	case ro.known && rn.known && bytes.Equal(ro.value, rn.value):
		if ro.secret == rn.secret {
			return Difference{}, false
		}
		// The same value, moved into or out of a Secret: worth a look, but the plain side
		// must not show what is also the secret value.
		d := Difference{Name: name, Kind: KindChanged, Old: o.String(), New: n.String(), OldValue: o, NewValue: n, SameValue: true}
		if ro.secret {
			d.Old += " (same value)"
			d.New = n.withoutValue() + " (same value)"
		} else {
			d.Old = o.withoutValue() + " (same value)"
			d.New += " (same value)"
		}
		return d, true
	case ro.known && rn.known:
	case o.FieldRef != "" && n.FieldRef != "":
		if o.FieldRef == n.FieldRef {
			return Difference{}, false
		}
	case !ro.known && !rn.known:
		// A missing reference or Secret on both sides: the same reference is the same
		// (unknown) value.
		if o.Missing == n.Missing && o.FieldRef == n.FieldRef && refEqual(o.FromSecret, n.FromSecret) && refEqual(o.FromConfigMap, n.FromConfigMap) {
			return Difference{}, false
		}
	}
	d := Difference{Name: name, Kind: KindChanged, Old: o.String(), New: n.String(), OldValue: o, NewValue: n}
	marker := " (value unknown)"
	if ro.known && rn.known {
		marker = " (different value)"
	}
	if ro.secret && !o.Missing {
		d.Old += marker
	}
	if rn.secret && !n.Missing {
		d.New += marker
	}
	return d, true
}

// withoutValue describes where a value comes from without showing it.
func (v Value) withoutValue() string {
	if v.FromConfigMap != nil {
		return "configmap " + v.FromConfigMap.Name + "/" + v.FromConfigMap.Key
	}
	return "literal"
}

func refEqual(a, b *Ref) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
