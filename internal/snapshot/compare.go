package snapshot

import (
	"fmt"
	"math"
	"reflect"
	"regexp"
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// serverSetMetadata are the metadata fields the API server sets. A snapshot drops them: with them
// a stored object could not be applied again once the live one changed (resourceVersion), and
// they say nothing about what the object should be.
var serverSetMetadata = []string{
	"resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink",
	"deletionTimestamp", "deletionGracePeriodSeconds",
}

// controllerAnnotations are annotations controllers write to report state; restoring an old
// value would only be overwritten (or mislead the controller), so they are neither stored nor
// compared, and Restore leaves the live values alone. kubectl's last-applied-configuration is
// not among them: it is what `kubectl apply` diffs against, and is kept.
var controllerAnnotations = map[string]bool{
	"deployment.kubernetes.io/revision": true, // deployment controller
	"cloud.google.com/neg-status":       true, // GKE NEG controller
	// GKE Ingress controller: the load balancer it built.
	"ingress.kubernetes.io/backends":              true,
	"ingress.kubernetes.io/forwarding-rule":       true,
	"ingress.kubernetes.io/https-forwarding-rule": true,
	"ingress.kubernetes.io/target-proxy":          true,
	"ingress.kubernetes.io/https-target-proxy":    true,
	"ingress.kubernetes.io/url-map":               true,
	"ingress.kubernetes.io/redirect-url-map":      true,
	"ingress.kubernetes.io/ssl-cert":              true,
	"ingress.kubernetes.io/static-ip":             true,
}

// Sanitize returns a copy of u without what the server sets: the metadata fields
// resourceVersion, uid, creationTimestamp, generation, managedFields, selfLink and the deletion
// fields, status, and the annotations controllers write to report state (the Deployment
// revision, GKE's NEG status and Ingress load-balancer names). Everything else is kept,
// including kubectl's last-applied-configuration annotation, ownerReferences, finalizers and a
// Service's clusterIP(s) and nodePorts (see Restore for how those are restored).
func Sanitize(u *unstructured.Unstructured) *unstructured.Unstructured {
	out := u.DeepCopy()
	meta, _ := out.Object["metadata"].(map[string]any)
	for _, f := range serverSetMetadata {
		delete(meta, f)
	}
	if ann, ok := meta["annotations"].(map[string]any); ok {
		for k := range ann {
			if controllerAnnotations[k] {
				delete(ann, k)
			}
		}
		if len(ann) == 0 {
			delete(meta, "annotations")
		}
	}
	delete(out.Object, "status")
	return out
}

// Compare lists the paths of the fields where live and stored differ, ignoring what Sanitize
// drops, sorted. Paths read like `spec.replicas`, `metadata.annotations["cloud.google.com/neg"]`,
// `spec.template.spec.containers[name=web].image` or `spec.rules[1]`; a field present on one side
// only is listed too. Values are never included, so the result is safe for Secrets.
//
// A plain recursive compare rather than structured-merge-diff: without the API server's schema
// (which Compare has no client to fetch) structured-merge-diff treats every list as atomic and
// would name only `spec.template.spec.containers`; matching lists of named items by name names
// the field that changed.
func Compare(live, stored *unstructured.Unstructured) []string {
	var out []string
	diff("", Sanitize(live).Object, Sanitize(stored).Object, &out)
	sort.Strings(out)
	return out
}

var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

func child(path, key string) string {
	if !plainKey.MatchString(key) {
		return fmt.Sprintf("%s[%q]", path, key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func diff(path string, a, b any, out *[]string) {
	if a == nil || b == nil {
		if a != nil || b != nil {
			*out = append(*out, path)
		}
		return
	}
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok {
			*out = append(*out, path)
			return
		}
		keys := map[string]bool{}
		for k := range a {
			keys[k] = true
		}
		for k := range b {
			keys[k] = true
		}
		for k := range keys {
			diff(child(path, k), a[k], b[k], out)
		}
	case []any:
		b, ok := b.([]any)
		if !ok {
			*out = append(*out, path)
			return
		}
		diffList(path, a, b, out)
	default:
		if !scalarEqual(a, b) {
			*out = append(*out, path)
		}
	}
}

// diffList matches items by name when every item on both sides is an object with a unique
// name (containers, env, ports, volumes...), by index otherwise. Named items in another order
// are reported at the list's path: order matters for some (env references earlier variables).
func diffList(path string, a, b []any, out *[]string) {
	an, aok := byName(a)
	bn, bok := byName(b)
	if !aok || !bok {
		for i := 0; i < max(len(a), len(b)); i++ {
			p := fmt.Sprintf("%s[%d]", path, i)
			switch {
			case i >= len(a) || i >= len(b):
				*out = append(*out, p)
			default:
				diff(p, a[i], b[i], out)
			}
		}
		return
	}
	names := map[string]bool{}
	for n := range an {
		names[n] = true
	}
	for n := range bn {
		names[n] = true
	}
	for n := range names {
		diff(fmt.Sprintf("%s[name=%s]", path, n), an[n], bn[n], out)
	}
	if len(an) == len(bn) && len(names) == len(an) {
		for i := range a {
			if a[i].(map[string]any)["name"] != b[i].(map[string]any)["name"] {
				*out = append(*out, path)
				break
			}
		}
	}
}

func byName(l []any) (map[string]any, bool) {
	m := make(map[string]any, len(l))
	for _, item := range l {
		obj, ok := item.(map[string]any)
		if !ok {
			return nil, false
		}
		n, ok := obj["name"].(string)
		if !ok {
			return nil, false
		}
		if _, dup := m[n]; dup {
			return nil, false
		}
		m[n] = item
	}
	return m, true
}

func scalarEqual(a, b any) bool {
	if x, ok := a.(int64); ok {
		if y, ok := b.(int64); ok {
			return x == y
		}
	}
	if x, ok := number(a); ok {
		y, ok := number(b)
		return ok && (x == y || (math.IsNaN(x) && math.IsNaN(y)))
	}
	return reflect.DeepEqual(a, b)
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	case int32:
		return float64(n), true
	case float64:
		return n, true
	case float32:
		return float64(n), true
	}
	return 0, false
}
