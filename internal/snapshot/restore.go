package snapshot

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Action is what Restore did to one object.
type Action string

const (
	// Unchanged: the live object already matched the snapshot; nothing was written.
	Unchanged Action = "unchanged"
	// Updated: the live object was changed back to the snapshot.
	Updated Action = "updated"
	// Created: the object no longer existed and was created from the snapshot.
	Created Action = "created"
	// Recreated: the snapshot could not be applied to the live object (an immutable field
	// changed), so the object was deleted and created from the snapshot.
	Recreated Action = "recreated"
	// Failed: the object could not be restored; Message says why.
	Failed Action = "failed"
)

// Outcome is what Restore did to one stored object.
type Outcome struct {
	Ref    Ref
	Action Action
	// Fields are the paths that differed from the snapshot before the restore (see Compare).
	Fields []string
	// Message explains a recreation, a kept clusterIP, a failure. Never a Secret's data.
	Message string
}

func (o Outcome) String() string {
	s := fmt.Sprintf("%s %s: %s", o.Ref.Kind, o.Ref.Name, o.Action)
	if len(o.Fields) > 0 {
		s += " (" + strings.Join(o.Fields, ", ") + ")"
	}
	if o.Message != "" {
		s += ": " + o.Message
	}
	return s
}

// deletionTimeout bounds the wait for a deleted object to disappear before it is created again.
const deletionTimeout = 2 * time.Minute

// Restore brings every object of snapshot name back to its stored state, in dependency order
// (ConfigMaps and Secrets, custom resources such as BackendConfig, Services, workloads, HPAs,
// Ingresses), and reports what it did to each. An object that already matches (Compare) is not
// written. Otherwise the stored object is server-side applied with fieldOwner and Force, which
// takes every stored field back from whichever manager changed it (Helm, the traffic switch,
// kubectl scale), or creates the object if it was deleted. Fields another manager added since
// the snapshot are not removed by an apply, so when some remain the object is then updated
// (PUT, guarded by its resourceVersion) to exactly the stored object. Restore never removes a
// finalizer, and leaves the controller-written annotations Sanitize drops alone.
//
// When the apply is refused because an immutable field differs (a Deployment's spec.selector, a
// Secret or ConfigMap made immutable, a Service turned headless) the object is deleted (in the
// background: a Deployment's ReplicaSets and Pods go with it) and created from the snapshot, and
// the Outcome says so.
//
// Services: the snapshot keeps spec.clusterIP(s) and nodePorts, so a Service that was not
// recreated is restored unchanged, a headless Service stays headless, and a Service deleted
// since gets back its address when it is free. When it is not (another Service took it), the
// Service is created with addresses the API server allocates, and the Outcome says so. A live
// Service whose clusterIP differs from the stored one (it was deleted and created since) keeps
// its address: a clusterIP cannot change in place, clients find the Service by name, and
// recreating it would cut it off for nothing.
//
// Restore goes on after an object fails and returns every Outcome with the joined errors.
func Restore(ctx context.Context, c client.Client, namespace, name, fieldOwner string) ([]Outcome, error) {
	if fieldOwner == "" {
		return nil, errors.New("restore: a field owner is required")
	}
	objects, err := Load(ctx, c, namespace, name)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(objects, func(i, j int) bool { return kindOrder(objects[i]) < kindOrder(objects[j]) })
	r := restorer{c: c, owner: fieldOwner}
	var outcomes []Outcome
	var errs []error
	for _, stored := range objects {
		stored = stored.DeepCopy()
		stored.SetNamespace(namespace)
		o := r.restore(ctx, stored)
		outcomes = append(outcomes, o)
		if o.Action == Failed {
			errs = append(errs, errors.New(o.String()))
		}
	}
	if len(errs) > 0 {
		return outcomes, fmt.Errorf("restoring snapshot %s: %d of %d objects failed: %w", name, len(errs), len(objects), errors.Join(errs...))
	}
	return outcomes, nil
}

// kindOrder: what others refer to first (config, then custom resources such as BackendConfig
// that Services and Ingresses name in annotations), then Services, workloads, their scalers, and
// the Ingress last, so it never points at a Service that does not exist yet.
func kindOrder(u *unstructured.Unstructured) int {
	switch u.GetKind() {
	case "ServiceAccount":
		return 0
	case "Secret", "ConfigMap":
		return 1
	case "PersistentVolumeClaim", "Role", "RoleBinding", "NetworkPolicy":
		return 2
	case "Service":
		return 4
	case "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob":
		return 5
	case "HorizontalPodAutoscaler", "PodDisruptionBudget":
		return 6
	case "Ingress", "HTTPRoute":
		return 7
	}
	return 3
}

type restorer struct {
	c     client.Client
	owner string
}

func (r restorer) restore(ctx context.Context, stored *unstructured.Unstructured) Outcome {
	ref := RefOf(stored)
	var fields []string
	fail := func(format string, args ...any) Outcome {
		return Outcome{Ref: ref, Action: Failed, Fields: fields, Message: fmt.Sprintf(format, args...)}
	}
	live, err := r.get(ctx, stored)
	if apierrors.IsNotFound(err) {
		msg, err := r.create(ctx, stored)
		if err != nil {
			return fail("creating: %v", redact(ref, err))
		}
		return Outcome{Ref: ref, Action: Created, Message: msg}
	}
	if err != nil {
		return fail("reading: %v", redact(ref, err))
	}
	if live.GetDeletionTimestamp() != nil {
		return r.recreate(ctx, stored, live, nil, "it was being deleted")
	}

	target, note := targetFor(stored, live)
	fields = Compare(live, target)
	if len(fields) == 0 {
		return Outcome{Ref: ref, Action: Unchanged, Message: note}
	}
	if why := recreateReason(target, live); why != "" {
		return r.recreate(ctx, stored, live, fields, why)
	}

	err = r.apply(ctx, target)
	if im := immutableFields(err); len(im) > 0 {
		return r.recreate(ctx, stored, live, fields, strings.Join(im, ", ")+" cannot change in place")
	}
	if isAllocationError(target, err) {
		// A stored nodePort now taken by another Service: keep the live ones.
		target = withoutAllocations(target, live)
		note = join(note, "nodePorts kept: the stored ones are taken")
		err = r.apply(ctx, target)
	}
	if err != nil {
		return fail("applying: %v", redact(ref, err))
	}

	// An apply does not remove fields other managers own that the snapshot lacks (a label Helm
	// added, a selector key the traffic switch added to a granular map): update to the stored
	// object where any remain.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		after, err := r.get(ctx, target)
		if err != nil {
			return err
		}
		if len(Compare(after, target)) == 0 {
			return nil
		}
		return r.c.Update(ctx, putBody(target, after), client.FieldOwner(r.owner))
	})
	if err != nil {
		return fail("updating: %v", redact(ref, err))
	}
	if after, err := r.get(ctx, target); err == nil {
		if rest := Compare(after, target); len(rest) > 0 {
			note = join(note, "changed again since by another writer: "+strings.Join(rest, ", "))
		}
	}
	return Outcome{Ref: ref, Action: Updated, Fields: fields, Message: note}
}

func (r restorer) get(ctx context.Context, like *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(like.GroupVersionKind())
	err := r.c.Get(ctx, client.ObjectKeyFromObject(like), u)
	return u, err
}

func (r restorer) apply(ctx context.Context, u *unstructured.Unstructured) error {
	return r.c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u.DeepCopy()), client.FieldOwner(r.owner), client.ForceOwnership)
}

// create applies stored to an absent object. A Service whose stored addresses are taken is
// created with addresses the API server allocates; the returned note says so.
func (r restorer) create(ctx context.Context, stored *unstructured.Unstructured) (string, error) {
	err := r.apply(ctx, stored)
	if !isAllocationError(stored, err) {
		return "", err
	}
	if err := r.apply(ctx, withoutAllocations(stored, nil)); err != nil {
		return "", err
	}
	note := "the stored Service addresses are taken: the API server allocated new ones"
	if got, err := r.get(ctx, stored); err == nil {
		oldIP, _, _ := unstructured.NestedString(stored.Object, "spec", "clusterIP")
		newIP, _, _ := unstructured.NestedString(got.Object, "spec", "clusterIP")
		if oldIP != newIP {
			note = fmt.Sprintf("clusterIP %s is taken: created with %s", oldIP, newIP)
		}
	}
	return note, nil
}

// recreate deletes live (only that very object: UID precondition), waits until it is gone and
// creates stored.
func (r restorer) recreate(ctx context.Context, stored, live *unstructured.Unstructured, fields []string, why string) Outcome {
	ref := RefOf(stored)
	uid := live.GetUID()
	if live.GetDeletionTimestamp() == nil {
		err := r.c.Delete(ctx, live, client.Preconditions{UID: &uid}, client.PropagationPolicy(metav1.DeletePropagationBackground))
		if err != nil && !apierrors.IsNotFound(err) {
			return Outcome{Ref: ref, Action: Failed, Fields: fields, Message: fmt.Sprintf("%s, and deleting it failed: %v", why, redact(ref, err))}
		}
	}
	if err := r.waitGone(ctx, stored, uid); err != nil {
		return Outcome{Ref: ref, Action: Failed, Fields: fields, Message: fmt.Sprintf("%s: %v", why, err)}
	}
	note, err := r.create(ctx, stored)
	if err != nil {
		return Outcome{Ref: ref, Action: Failed, Fields: fields, Message: fmt.Sprintf(
			"%s: deleted, but creating it again failed (Restore again creates it): %v", why, redact(ref, err))}
	}
	return Outcome{Ref: ref, Action: Recreated, Fields: fields, Message: join("deleted and created again: "+why, note)}
}

func (r restorer) waitGone(ctx context.Context, like *unstructured.Unstructured, uid types.UID) error {
	var finalizers []string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, deletionTimeout, true, func(ctx context.Context) (bool, error) {
		u, err := r.get(ctx, like)
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		finalizers = u.GetFinalizers()
		return u.GetUID() != uid, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the old object to be deleted (finalizers %v): %w", finalizers, err)
	}
	return nil
}

// targetFor is the state to restore a live object to: the stored object, except that a Service
// keeps a live clusterIP that differs from the stored one (see Restore).
func targetFor(stored, live *unstructured.Unstructured) (*unstructured.Unstructured, string) {
	if stored.GetKind() != "Service" || stored.GroupVersionKind().Group != "" {
		return stored, ""
	}
	sIP, _, _ := unstructured.NestedString(stored.Object, "spec", "clusterIP")
	lIP, _, _ := unstructured.NestedString(live.Object, "spec", "clusterIP")
	if sIP == lIP || sIP == "" || lIP == "" || sIP == "None" || lIP == "None" {
		return stored, ""
	}
	target := stored.DeepCopy()
	for _, f := range []string{"clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"} {
		if v, ok, _ := unstructured.NestedFieldCopy(live.Object, "spec", f); ok {
			_ = unstructured.SetNestedField(target.Object, v, "spec", f)
		}
	}
	return target, fmt.Sprintf("clusterIP %s kept (the snapshot has %s; it cannot change in place)", lIP, sIP)
}

// recreateReason names a difference no write can undo, known before trying.
func recreateReason(target, live *unstructured.Unstructured) string {
	if target.GetKind() == "Service" && target.GroupVersionKind().Group == "" {
		sIP, _, _ := unstructured.NestedString(target.Object, "spec", "clusterIP")
		lIP, _, _ := unstructured.NestedString(live.Object, "spec", "clusterIP")
		if (sIP == "None") != (lIP == "None") {
			return "a Service cannot become headless, or stop being headless, in place"
		}
	}
	return ""
}

// putBody is target with what the live object must keep: its resourceVersion (the update fails
// if the object changed since it was read), the annotations controllers write, its finalizers
// and its status.
func putBody(target, live *unstructured.Unstructured) *unstructured.Unstructured {
	body := target.DeepCopy()
	body.SetResourceVersion(live.GetResourceVersion())
	body.SetUID(live.GetUID())
	ann := body.GetAnnotations()
	for k, v := range live.GetAnnotations() {
		if controllerAnnotations[k] {
			if ann == nil {
				ann = map[string]string{}
			}
			ann[k] = v
		}
	}
	body.SetAnnotations(ann)
	finalizers := body.GetFinalizers()
	for _, f := range live.GetFinalizers() {
		if !contains(finalizers, f) {
			finalizers = append(finalizers, f)
		}
	}
	body.SetFinalizers(finalizers)
	if st, ok := live.Object["status"]; ok {
		body.Object["status"] = st
	}
	return body
}

// immutableFields returns the fields an Invalid error says cannot change, when that is all it
// says: an object refused for another reason as well must not be deleted.
func immutableFields(err error) []string {
	causes := invalidCauses(err)
	var fields []string
	for _, c := range causes {
		if !strings.Contains(c.Message, "immutable") && !strings.Contains(c.Message, "may not change once set") {
			return nil
		}
		fields = append(fields, c.Field)
	}
	return fields
}

// isAllocationError: a Service refused only for its clusterIP(s) or nodePorts (taken, or outside
// the cluster's ranges).
func isAllocationError(u *unstructured.Unstructured, err error) bool {
	if u.GetKind() != "Service" || u.GroupVersionKind().Group != "" {
		return false
	}
	causes := invalidCauses(err)
	for _, c := range causes {
		if strings.Contains(c.Message, "may not change once set") ||
			!(strings.HasPrefix(c.Field, "spec.clusterIP") || strings.HasPrefix(c.Field, "spec.healthCheckNodePort") ||
				(strings.HasPrefix(c.Field, "spec.ports") && strings.HasSuffix(c.Field, "nodePort"))) {
			return false
		}
	}
	return len(causes) > 0
}

func invalidCauses(err error) []metav1.StatusCause {
	var st apierrors.APIStatus
	if err == nil || !errors.As(err, &st) || st.Status().Reason != metav1.StatusReasonInvalid || st.Status().Details == nil {
		return nil
	}
	return st.Status().Details.Causes
}

// withoutAllocations drops what the API server allocates to a Service (a headless Service's
// "None" stays) so that it allocates anew; with a live Service, its nodePorts are taken instead
// (matched by port name, else by port and protocol) and the clusterIP is left as it is.
func withoutAllocations(stored, live *unstructured.Unstructured) *unstructured.Unstructured {
	u := stored.DeepCopy()
	spec, _ := u.Object["spec"].(map[string]any)
	if spec == nil {
		return u
	}
	if ip, _ := spec["clusterIP"].(string); ip != "None" && live == nil {
		delete(spec, "clusterIP")
		delete(spec, "clusterIPs")
	}
	delete(spec, "healthCheckNodePort")
	var livePorts []any
	if live != nil {
		if v, ok, _ := unstructured.NestedFieldCopy(live.Object, "spec", "healthCheckNodePort"); ok {
			spec["healthCheckNodePort"] = v
		}
		livePorts, _, _ = unstructured.NestedSlice(live.Object, "spec", "ports")
	}
	ports, _ := spec["ports"].([]any)
	for _, p := range ports {
		pm, ok := p.(map[string]any)
		if !ok {
			continue
		}
		delete(pm, "nodePort")
		for _, lp := range livePorts {
			lm, _ := lp.(map[string]any)
			same := pm["name"] != nil && pm["name"] == lm["name"] ||
				pm["name"] == nil && scalarEqual(pm["port"], lm["port"]) && pm["protocol"] == lm["protocol"]
			if same && lm["nodePort"] != nil {
				pm["nodePort"] = lm["nodePort"]
			}
		}
	}
	return u
}

// redact keeps a Secret's data out of an error: for a Secret only the status reason and the
// names of the fields at fault remain.
func redact(ref Ref, err error) error {
	if ref.Kind != "Secret" || err == nil {
		return err
	}
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return fmt.Errorf("request about Secret %s failed (details withheld: the object holds secret data)", ref.Name)
	}
	s := st.Status()
	out := metav1.Status{Status: s.Status, Code: s.Code, Reason: s.Reason}
	msg := fmt.Sprintf("Secret %s: %s (%d)", ref.Name, s.Reason, s.Code)
	if s.Details != nil {
		out.Details = &metav1.StatusDetails{Name: s.Details.Name, Group: s.Details.Group, Kind: s.Details.Kind}
		var fields []string
		for _, c := range s.Details.Causes {
			out.Details.Causes = append(out.Details.Causes, metav1.StatusCause{Type: c.Type, Field: c.Field})
			if c.Field != "" {
				fields = append(fields, fmt.Sprintf("%s (%s)", c.Field, c.Type))
			}
		}
		if len(fields) > 0 {
			msg += " at " + strings.Join(fields, ", ")
		}
	}
	out.Message = msg + " (details withheld: the object holds secret data)"
	return &apierrors.StatusError{ErrStatus: out}
}

func join(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
