package traffic

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// kinds are the kinds a Change may be about.
var kinds = map[string]schema.GroupVersionKind{
	"Service": corev1.SchemeGroupVersion.WithKind("Service"),
	"Ingress": networkingv1.SchemeGroupVersion.WithKind("Ingress"),
}

// ConflictError says that a field is neither where a change starts nor where it ends: someone
// else changed it since the plan, and Apply does not overwrite it.
type ConflictError struct {
	Change Change
	// Live is the field's JSON as found, "" when absent.
	Live string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s %s is %s, neither %s (before the switch) nor %s (after): it changed since the switch was planned, so it is left as it is",
		e.Change.Object(), e.Change.Path, orNone(e.Live), orNone(e.Change.Before), orNone(e.Change.After))
}

// jsonPatchOp is one operation of a JSON patch (RFC 6902).
type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Apply makes the changes to the objects in namespace, one object at a time in the order the
// objects first appear, with one JSON patch per object under fieldOwner. The patch replaces each
// field whole and begins with a `test` of each field's Before (of the object's resourceVersion
// when the field was absent), so a field changed since the plan fails the patch instead of being
// overwritten. A field already at its After is skipped, so Apply may run again after an
// interruption and changes nothing the second time. A field at neither is a *ConflictError, and
// nothing more is written from there on.
//
// A change whose Before or After is not JSON (a corrupted record in status) is an error before
// anything is written.
func Apply(ctx context.Context, c client.Client, namespace string, changes []Change, fieldOwner string) error {
	if err := checkJSON(changes); err != nil {
		return err
	}
	type object struct{ kind, name string }
	var order []object
	byObject := map[object][]Change{}
	for _, ch := range changes {
		o := object{ch.Kind, ch.Name}
		if _, ok := byObject[o]; !ok {
			order = append(order, o)
		}
		byObject[o] = append(byObject[o], ch)
	}
	for _, o := range order {
		if err := applyObject(ctx, c, namespace, o.kind, o.name, byObject[o], fieldOwner); err != nil {
			return err
		}
	}
	return nil
}

func applyObject(ctx context.Context, c client.Client, namespace, kind, name string, changes []Change, fieldOwner string) error {
	gvk, ok := kinds[kind]
	if !ok {
		return fmt.Errorf("change of %s/%s: traffic changes only Services and Ingresses", kind, name)
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, u); err != nil {
		return fmt.Errorf("reading %s/%s: %w", kind, name, err)
	}
	// doc is the object as the patch leaves it so far, so that a later operation sees the
	// parent an earlier one created.
	doc := u.DeepCopy().Object
	var ops []jsonPatchOp
	guardVersion := false
	for _, ch := range changes {
		live, found := lookup(doc, ch.Path)
		liveJSON := ""
		if found {
			liveJSON = mustJSON(live)
		}
		switch {
		case sameJSON(liveJSON, ch.After):
			continue
		case !sameJSON(liveJSON, ch.Before):
			return &ConflictError{Change: ch, Live: liveJSON}
		}
		// checkJSON has made sure both decode.
		before, _ := decode(ch.Before)
		after, _ := decode(ch.After)
		if ch.Before == "" {
			guardVersion = true
		} else {
			ops = append(ops, jsonPatchOp{Op: "test", Path: ch.Path, Value: before})
		}
		switch parent, last := splitPointer(ch.Path); {
		case ch.After == "":
			ops = append(ops, jsonPatchOp{Op: "remove", Path: ch.Path})
		case ch.Before != "":
			ops = append(ops, jsonPatchOp{Op: "replace", Path: ch.Path, Value: after})
		case exists(doc, parent):
			ops = append(ops, jsonPatchOp{Op: "add", Path: ch.Path, Value: after})
		default:
			// JSON patch adds no missing parents: add the parent holding the field (a Service
			// without annotations getting its first one).
			ops = append(ops, jsonPatchOp{Op: "add", Path: parent, Value: map[string]any{last: after}})
		}
		if err := set(doc, ch.Path, ch.After); err != nil {
			return err
		}
	}
	if len(ops) == 0 {
		return nil
	}
	if guardVersion {
		ops = append([]jsonPatchOp{{Op: "test", Path: "/metadata/resourceVersion", Value: u.GetResourceVersion()}}, ops...)
	}
	data, err := json.Marshal(ops)
	if err != nil {
		return err
	}
	if err := c.Patch(ctx, u, client.RawPatch(types.JSONPatchType, data), client.FieldOwner(fieldOwner)); err != nil {
		if apierrors.IsInvalid(err) {
			// The API server says no more when a test operation fails.
			return fmt.Errorf("patching %s/%s: %w: a field changed after it was read (the patch tests it), or the new value is invalid; nothing of it was written",
				kind, name, err)
		}
		return fmt.Errorf("patching %s/%s: %w", kind, name, err)
	}
	return nil
}

// Original returns a copy of the stack as it was before applied was made: the fields the
// changes made are set back to their Before, in memory. Plan against it, then Then(applied,
// plan) goes from where applied left the cluster to where the plan leads; Services moved to the
// maintenance page are found again this way (SourceServices of Original's Services), since their
// live selectors no longer pick the source pods.
func Original(s Stack, applied []Change) (Stack, error) {
	if err := checkJSON(applied); err != nil {
		return Stack{}, err
	}
	var err error
	out := s
	undoAll := func(in []corev1.Service) []corev1.Service {
		if in == nil {
			return nil
		}
		res := make([]corev1.Service, len(in))
		for i := range in {
			if err == nil {
				err = undo("Service", in[i].Name, &in[i], &res[i], applied)
			}
		}
		return res
	}
	out.Services = undoAll(s.Services)
	out.TargetServices = undoAll(s.TargetServices)
	if s.Ingress != nil && err == nil {
		out.Ingress = &networkingv1.Ingress{}
		err = undo("Ingress", s.Ingress.Name, s.Ingress, out.Ingress, applied)
	}
	if err != nil {
		return Stack{}, err
	}
	return out, nil
}

// undo writes into out the object in with the fields that changes of kind/name made set back
// to their Before.
func undo(kind, name string, in, out any, changes []Change) error {
	data, err := json.Marshal(in)
	if err != nil {
		return err
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return err
	}
	for _, ch := range Reverse(changes) {
		if ch.Kind == kind && ch.Name == name {
			if err := set(doc, ch.Path, ch.After); err != nil {
				return fmt.Errorf("%s: %w", ch.Object(), err)
			}
		}
	}
	if data, err = json.Marshal(doc); err != nil {
		return err
	}
	return json.Unmarshal(data, out)
}

func mustJSON(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("traffic: marshalling %T: %v", v, err))
	}
	return string(data)
}

// decode decodes a field's JSON; "" (absent) is nil.
func decode(s string) (any, error) {
	if s == "" {
		return nil, nil
	}
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, err
	}
	return v, nil
}

// checkJSON returns an error naming the first change whose Before or After is not JSON. A change
// comes back from status, where anything may have written it; the value is not quoted, as status
// is not the place to echo whatever a field held.
func checkJSON(changes []Change) error {
	for _, ch := range changes {
		for _, v := range []struct{ what, json string }{{"before", ch.Before}, {"after", ch.After}} {
			if _, err := decode(v.json); err != nil {
				return fmt.Errorf("the recorded change of %s %s is corrupted: its value %s the change is not JSON (%v); nothing was written",
					ch.Object(), ch.Path, v.what, err)
			}
		}
	}
	return nil
}

// sameJSON compares two JSON texts by value; "" (absent) equals only "", and a text that is not
// JSON only itself.
func sameJSON(a, b string) bool {
	if a == "" || b == "" {
		return a == b
	}
	va, errA := decode(a)
	vb, errB := decode(b)
	if errA != nil || errB != nil {
		return a == b
	}
	return reflect.DeepEqual(va, vb)
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func tokens(ptr string) []string {
	if ptr == "" {
		return nil
	}
	parts := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(p, "~1", "/"), "~0", "~")
	}
	return parts
}

func splitPointer(ptr string) (parent, last string) {
	i := strings.LastIndex(ptr, "/")
	toks := tokens(ptr[i:])
	return ptr[:i], toks[len(toks)-1]
}

// lookup returns the value at ptr in a decoded JSON document.
func lookup(doc any, ptr string) (any, bool) {
	cur := doc
	for _, t := range tokens(ptr) {
		switch v := cur.(type) {
		case map[string]any:
			next, ok := v[t]
			if !ok {
				return nil, false
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(v) {
				return nil, false
			}
			cur = v[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

func exists(doc any, ptr string) bool {
	_, ok := lookup(doc, ptr)
	return ok
}

// set sets the value at ptr of a decoded JSON document to the JSON value, or deletes it when
// value is "". Missing objects on the way are created.
func set(doc any, ptr, value string) error {
	toks := tokens(ptr)
	if len(toks) == 0 {
		return fmt.Errorf("cannot set the whole document")
	}
	cur := doc
	for i, t := range toks {
		last := i == len(toks)-1
		switch v := cur.(type) {
		case map[string]any:
			if last {
				if value == "" {
					delete(v, t)
					return nil
				}
				decoded, err := decode(value)
				if err != nil {
					return fmt.Errorf("%s: %w", ptr, err)
				}
				v[t] = decoded
				return nil
			}
			next, ok := v[t]
			if !ok || next == nil {
				if value == "" {
					return nil
				}
				next = map[string]any{}
				v[t] = next
			}
			cur = next
		case []any:
			n, err := strconv.Atoi(t)
			if err != nil || n < 0 || n >= len(v) {
				return fmt.Errorf("%s: no element %s", ptr, t)
			}
			if last {
				if value == "" {
					return fmt.Errorf("%s: removing a list element is not a traffic change", ptr)
				}
				decoded, err := decode(value)
				if err != nil {
					return fmt.Errorf("%s: %w", ptr, err)
				}
				v[n] = decoded
				return nil
			}
			cur = v[n]
		default:
			return fmt.Errorf("%s: %s is not an object or a list", ptr, strings.Join(toks[:i], "/"))
		}
	}
	return nil
}
