package envparity

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ptr[T any](v T) *T { return &v }

func configMap(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}
}

func secret(name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

func pod(c corev1.Container) corev1.PodSpec {
	c.Name = "app"
	return corev1.PodSpec{Containers: []corev1.Container{{Name: "sidecar"}, c}}
}

func fromConfigMap(name, key string) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key}}
}

func fromSecret(name, key string) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key}}
}

func TestEffectiveResolvesLikeTheKubelet(t *testing.T) {
	cms := map[string]*corev1.ConfigMap{
		"first":  configMap("first", map[string]string{"A": "1", "B": "from-first", "bad=key": "x", "HOST": "db"}),
		"second": configMap("second", map[string]string{"B": "from-second"}),
	}
	secrets := map[string]*corev1.Secret{
		"creds": secret("creds", map[string]string{"PASS": "hunter2"}),
	}
	secrets["creds"].StringData = map[string]string{"USER": "admin"}
	optional := ptr(true)
	spec := pod(corev1.Container{
		EnvFrom: []corev1.EnvFromSource{
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "first"}}},
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "second"}}},
			{Prefix: "DB_", SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}}},
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Optional: optional}},
		},
		Env: []corev1.EnvVar{
			{Name: "A", Value: "overridden"},
			{Name: "URL", Value: "postgres://$(DB_USER):$(DB_PASS)@$(HOST)/$(UNDEFINED)?a=$$(A)&b=$(A)&c=$x$"},
			{Name: "KEYED", ValueFrom: fromConfigMap("second", "B")},
			{Name: "HOST", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Key: "HOST", Optional: optional}}},
			{Name: "GONE", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "nope", Optional: optional}}},
			{Name: "BROKEN", ValueFrom: fromConfigMap("first", "nope")},
			{Name: "BROKEN_SECRET", ValueFrom: fromSecret("absent", "PASS")},
			{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "MEM", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
				Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
			{Name: "LATE", Value: "$(POD)-$(EARLY)"},
			{Name: "EARLY", Value: "e"},
		},
	})
	got, err := Effective(spec, "app", cms, secrets)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Value{
		"A":             {Literal: "overridden"},
		"B":             {Literal: "from-second", FromConfigMap: &Ref{"second", "B"}},
		"HOST":          {Literal: "db", FromConfigMap: &Ref{"first", "HOST"}},
		"DB_PASS":       {FromSecret: &Ref{"creds", "PASS"}},
		"DB_USER":       {FromSecret: &Ref{"creds", "USER"}},
		"URL":           {Literal: "postgres://$(DB_USER):$(DB_PASS)@db/$(UNDEFINED)?a=$(A)&b=overridden&c=$x$"},
		"KEYED":         {Literal: "from-second", FromConfigMap: &Ref{"second", "B"}},
		"BROKEN":        {FromConfigMap: &Ref{"first", "nope"}, Missing: true},
		"BROKEN_SECRET": {FromSecret: &Ref{"absent", "PASS"}, Missing: true},
		"POD":           {FieldRef: "metadata.name"},
		"MEM":           {FieldRef: "resourceFieldRef:app/limits.memory/1Mi"},
		"LATE":          {Literal: "$(POD)-$(EARLY)"},
		"EARLY":         {Literal: "e"},
	}
	if !reflect.DeepEqual(got, want) {
		for k := range merge(got, want) {
			if !reflect.DeepEqual(got[k], want[k]) {
				t.Errorf("%s = %#v, want %#v", k, got[k], want[k])
			}
		}
	}
	for k, v := range got {
		if strings.Contains(v.Literal, "hunter2") || strings.Contains(v.String(), "hunter2") {
			t.Errorf("%s shows a secret value: %s", k, v)
		}
	}
}

func merge(a, b map[string]Value) map[string]bool {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	return keys
}

func TestEffectiveErrors(t *testing.T) {
	secrets := map[string]*corev1.Secret{"s": secret("s", map[string]string{"K": "topsecret"})}
	for name, c := range map[string]corev1.Container{
		"missing ConfigMap": {EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "gone"}}}}},
		"missing Secret":    {EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "gone"}}}}},
	} {
		_, err := Effective(pod(c), "app", nil, secrets)
		if err == nil || !strings.Contains(err.Error(), "gone") {
			t.Errorf("%s: error %v, want one naming it", name, err)
		}
	}
	if _, err := Effective(pod(corev1.Container{}), "nope", nil, nil); err == nil {
		t.Error("no error for an unknown container")
	}
	init := corev1.PodSpec{InitContainers: []corev1.Container{{Name: "init", Env: []corev1.EnvVar{{Name: "X", Value: "1"}}}}}
	if env, err := Effective(init, "init", nil, nil); err != nil || env["X"].Literal != "1" {
		t.Errorf("init container: %v, %v", env, err)
	}
}

func TestDiff(t *testing.T) {
	secrets := map[string]*corev1.Secret{
		"old":      secret("old", map[string]string{"PASS": "old-password", "KEY": "same-key", "LOGIN": "apikey"}),
		"new":      secret("new", map[string]string{"PASS": "new-password", "KEY": "same-key"}),
		"new-pass": secret("new-pass", map[string]string{"password": "old-password"}),
	}
	old := map[string]Value{
		"DB_HOST":   {Literal: "10.0.0.1", FromConfigMap: &Ref{"env", "DB_HOST"}},
		"LOCALE":    {Literal: "ja"},
		"PASS":      {FromSecret: &Ref{"old", "PASS"}},
		"SAME":      {FromSecret: &Ref{"old", "PASS"}},
		"KEY":       {FromSecret: &Ref{"old", "KEY"}},
		"LOGIN":     {FromSecret: &Ref{"old", "LOGIN"}},
		"GONE":      {Literal: "x"},
		"POD":       {FieldRef: "metadata.name"},
		"BROKEN":    {FromConfigMap: &Ref{"env", "BROKEN"}, Missing: true},
		"TOLITERAL": {FromSecret: &Ref{"old", "PASS"}},
	}
	new := map[string]Value{
		"DB_HOST":   {Literal: "10.0.0.2", FromConfigMap: &Ref{"helm-env", "DB_HOST"}},
		"LOCALE":    {Literal: "ja", FromConfigMap: &Ref{"helm-env", "DEFAULT_LOCALE"}},
		"PASS":      {FromSecret: &Ref{"new", "PASS"}},
		"SAME":      {FromSecret: &Ref{"new-pass", "password"}},
		"KEY":       {FromSecret: &Ref{"new", "KEY"}},
		"LOGIN":     {Literal: "apikey"},
		"ADDED":     {FromSecret: &Ref{"new", "KEY"}},
		"POD":       {FieldRef: "metadata.name"},
		"BROKEN":    {FromConfigMap: &Ref{"env", "BROKEN"}, Missing: true},
		"TOLITERAL": {Literal: "not-the-password"},
	}
	got := Diff(old, new, secrets)
	want := []Difference{
		{Name: "ADDED", Kind: KindAdded, New: "secret new/KEY"},
		{Name: "DB_HOST", Kind: KindChanged, Old: `"10.0.0.1" (configmap env/DB_HOST)`, New: `"10.0.0.2" (configmap helm-env/DB_HOST)`},
		{Name: "GONE", Kind: KindMissing, Old: `"x"`},
		{Name: "LOGIN", Kind: KindChanged, Old: "secret old/LOGIN (same value)", New: "literal (same value)", SameValue: true},
		{Name: "PASS", Kind: KindChanged, Old: "secret old/PASS (different value)", New: "secret new/PASS (different value)"},
		{Name: "TOLITERAL", Kind: KindChanged, Old: "secret old/PASS (different value)", New: `"not-the-password"`},
	}
	withValues(want, old, new)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Diff\n%v\nwant\n%v", got, want)
	}
	for _, d := range got {
		for _, v := range []string{"old-password", "new-password", "same-key", "apikey"} {
			if strings.Contains(d.Name+d.Kind+d.Old+d.New+d.String(), v) {
				t.Errorf("%v shows the secret value %q", d, v)
			}
		}
	}
}

func TestDiffOfUnresolvableValues(t *testing.T) {
	old := map[string]Value{
		"A": {FromSecret: &Ref{"absent", "K"}},
		"B": {FromSecret: &Ref{"absent", "K"}},
		"C": {FromConfigMap: &Ref{"cm", "K"}, Missing: true},
		"D": {FieldRef: "metadata.name"},
	}
	new := map[string]Value{
		"A": {FromSecret: &Ref{"absent", "K"}},
		"B": {FromSecret: &Ref{"absent", "OTHER"}},
		"C": {Literal: "now here"},
		"D": {FieldRef: "metadata.namespace"},
	}
	got := Diff(old, new, nil)
	want := []Difference{
		{Name: "B", Kind: KindChanged, Old: "secret absent/K (value unknown)", New: "secret absent/OTHER (value unknown)"},
		{Name: "C", Kind: KindChanged, Old: "configmap cm/K (missing)", New: `"now here"`},
		{Name: "D", Kind: KindChanged, Old: "fieldRef metadata.name", New: "fieldRef metadata.namespace"},
	}
	withValues(want, old, new)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Diff\n%v\nwant\n%v", got, want)
	}
}

// withValues fills in the values a Difference carries: those of each side, zero where absent.
func withValues(diffs []Difference, old, new map[string]Value) {
	for i := range diffs {
		diffs[i].OldValue, diffs[i].NewValue = old[diffs[i].Name], new[diffs[i].Name]
	}
}
