// Package snapshot stores the live objects a migration may change, before it changes them, and
// restores them exactly.
//
// A snapshot is a set of Secrets in the migration's namespace, named "<name>-0", "<name>-1", ...
// (type mastodon-operator.io/snapshot, immutable, labelled mastodon-operator.io/snapshot=<name>).
// Their "payload" keys, concatenated in order, are one gzip stream of a JSON document holding the
// objects as read from the API server minus the fields the server sets (see Sanitize). The
// Secrets have no owner: deleting the MastodonMigration never deletes its pre-migration state.
//
// Part 0 is written last and alone carries the part count, object count, time and the SHA-256 of
// the whole stream, so a snapshot is complete exactly when part 0 exists: a Take interrupted
// half-way leaves parts 1..n without part 0, which Load refuses and the next Take replaces. A
// complete snapshot is never overwritten (Take returns it unchanged, and the Secrets are immutable,
// so the API server refuses to change their data).
//
// The snapshot holds Secrets' data too: it is itself a Secret, readable by whoever can read the
// originals, and nothing in this package puts a Secret's data in an error or a log line.
package snapshot

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	// SecretType is the type of every snapshot Secret.
	SecretType corev1.SecretType = "mastodon-operator.io/snapshot"
	// LabelSnapshot names the snapshot a Secret is part of.
	LabelSnapshot = "mastodon-operator.io/snapshot"

	// AnnotationPart is the index of a part (every part).
	AnnotationPart = "mastodon-operator.io/snapshot-part"
	// AnnotationDigest is "sha256:<hex>" of the whole compressed stream (every part).
	AnnotationDigest = "mastodon-operator.io/snapshot-digest"
	// AnnotationParts is the number of parts (part 0 only).
	AnnotationParts = "mastodon-operator.io/snapshot-parts"
	// AnnotationObjects is the number of objects stored (part 0 only).
	AnnotationObjects = "mastodon-operator.io/snapshot-objects"
	// AnnotationTakenAt is when the objects were read, RFC 3339 (part 0 only).
	AnnotationTakenAt = "mastodon-operator.io/snapshot-taken-at"
	// AnnotationFormat is the payload's format (part 0 only).
	AnnotationFormat = "mastodon-operator.io/snapshot-format"

	// PayloadKey is the data key of every part.
	PayloadKey = "payload"
	// MaxPartBytes is the most compressed bytes one Secret holds: under the API server's 1 MiB
	// limit on a Secret's data, and under etcd's 1.5 MiB request limit once base64-encoded.
	MaxPartBytes = 900 * 1024

	format     = "json+gzip/v1"
	docVersion = "snapshot.mastodon-operator.io/v1"
)

var (
	// ErrNotFound: no part 0, so no complete snapshot of that name (parts of an interrupted Take
	// may exist).
	ErrNotFound = errors.New("snapshot not found")
	// ErrIncomplete: part 0 exists but a part is missing, foreign or does not match the digest.
	ErrIncomplete = errors.New("snapshot incomplete or damaged")
)

// Ref names an object in the snapshot's namespace.
type Ref struct{ APIVersion, Kind, Name string }

func (r Ref) String() string { return fmt.Sprintf("%s %s (%s)", r.Kind, r.Name, r.APIVersion) }

// RefOf returns the Ref of an object.
func RefOf(u *unstructured.Unstructured) Ref {
	return Ref{APIVersion: u.GetAPIVersion(), Kind: u.GetKind(), Name: u.GetName()}
}

// Snapshot describes a complete stored snapshot.
type Snapshot struct {
	Name    string
	Objects int
	Parts   int
	TakenAt time.Time
	// Bytes is the size of the compressed payload over all parts.
	Bytes int
}

// document is the JSON the gzip stream holds.
type document struct {
	APIVersion string            `json:"apiVersion"`
	Namespace  string            `json:"namespace"`
	TakenAt    time.Time         `json:"takenAt"`
	Objects    []json.RawMessage `json:"objects"`
}

// Take reads every ref and stores the objects as snapshot name. All refs must exist and be
// namespaced, else nothing is stored and the error names every missing one. If a complete
// snapshot of that name exists it is returned unchanged (it is the pre-migration state); if it
// exists but is damaged, Take fails rather than overwrite it. Parts left by an interrupted Take
// are deleted and the snapshot is taken again. labels are added to every part (the
// mastodon-operator.io/snapshot label wins over a label of the same key).
func Take(ctx context.Context, c client.Client, namespace, name string, labels map[string]string, refs []Ref) (*Snapshot, error) {
	if err := validateName(name); err != nil {
		return nil, err
	}
	// Every part of an existing snapshot is read and verified, so a damaged one is found now
	// and not during a rollback.
	_, existing, err := load(ctx, c, namespace, name)
	switch {
	case err == nil:
		return existing, nil
	case errors.Is(err, ErrIncomplete):
		return nil, fmt.Errorf("snapshot %s exists but cannot be read (delete it to take it again): %w", name, err)
	case !errors.Is(err, ErrNotFound):
		return nil, err
	}

	objects, err := read(ctx, c, namespace, refs)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", name, err)
	}
	takenAt := time.Now().UTC().Truncate(time.Second)
	payload, err := encode(namespace, takenAt, objects)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", name, err)
	}

	// Leftovers of an interrupted Take: part 0 is absent (checked above), so none of them is
	// part of a complete snapshot.
	if err := deleteParts(ctx, c, namespace, name, false); err != nil {
		return nil, fmt.Errorf("snapshot %s: removing the parts of an interrupted snapshot: %w", name, err)
	}

	sum := sha256.Sum256(payload)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	chunks := split(payload, MaxPartBytes)
	snap := &Snapshot{Name: name, Objects: len(objects), Parts: len(chunks), TakenAt: takenAt, Bytes: len(payload)}
	// Part 0 last: it is what makes the snapshot complete.
	for i := len(chunks) - 1; i >= 0; i-- {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name:        partName(name, i),
				Namespace:   namespace,
				Labels:      map[string]string{},
				Annotations: map[string]string{AnnotationPart: strconv.Itoa(i), AnnotationDigest: digest},
			},
			Type:      SecretType,
			Immutable: new(true),
			Data:      map[string][]byte{PayloadKey: chunks[i]},
		}
		for k, v := range labels {
			s.Labels[k] = v
		}
		s.Labels[LabelSnapshot] = name
		if i == 0 {
			s.Annotations[AnnotationParts] = strconv.Itoa(snap.Parts)
			s.Annotations[AnnotationObjects] = strconv.Itoa(snap.Objects)
			s.Annotations[AnnotationTakenAt] = takenAt.Format(time.RFC3339)
			s.Annotations[AnnotationFormat] = format
		}
		if err := c.Create(ctx, s); err != nil {
			if i == 0 && apierrors.IsAlreadyExists(err) {
				// Another Take finished first: its snapshot is the one to keep.
				if _, other, err := load(ctx, c, namespace, name); err == nil {
					return other, nil
				}
			}
			return nil, fmt.Errorf("snapshot %s: creating Secret %s (part %d of %d): %w", name, s.Name, i+1, snap.Parts, err)
		}
	}
	return snap, nil
}

// Load returns the objects of a complete snapshot, in the order they were taken. It wraps
// ErrNotFound when the snapshot does not exist (or only parts of an interrupted Take do), and
// ErrIncomplete when a part is missing or does not match.
func Load(ctx context.Context, c client.Reader, namespace, name string) ([]*unstructured.Unstructured, error) {
	objs, _, err := load(ctx, c, namespace, name)
	return objs, err
}

// Delete deletes every part of a snapshot: part 0 first, so it is never seen complete with a
// part missing. Deleting a snapshot that does not exist is not an error.
func Delete(ctx context.Context, c client.Client, namespace, name string) error {
	return deleteParts(ctx, c, namespace, name, true)
}

// readConcurrency bounds the GETs Take has in flight: the objects are independent, and on a
// real cluster the round trips, not the API server, are the cost.
const readConcurrency = 8

// read gets every ref (duplicates once), sanitized, in the order given. It fails naming all refs
// that are missing.
func read(ctx context.Context, c client.Client, namespace string, refs []Ref) ([]*unstructured.Unstructured, error) {
	seen := map[Ref]bool{}
	var unique []Ref
	for _, ref := range refs {
		if ref.APIVersion == "" || ref.Kind == "" || ref.Name == "" {
			return nil, fmt.Errorf("incomplete reference %+v: apiVersion, kind and name are required", ref)
		}
		if !seen[ref] {
			seen[ref] = true
			unique = append(unique, ref)
		}
	}
	objects := make([]*unstructured.Unstructured, len(unique))
	missing := make([]string, len(unique))
	errs := make([]error, len(unique))
	sem := make(chan struct{}, readConcurrency)
	var wg sync.WaitGroup
	for i, ref := range unique {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			objects[i], missing[i], errs[i] = readOne(ctx, c, namespace, ref)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var gone []string
	for _, m := range missing {
		if m != "" {
			gone = append(gone, m)
		}
	}
	if len(gone) > 0 {
		return nil, fmt.Errorf("%d of %d objects not found in namespace %s: %s", len(gone), len(unique), namespace, strings.Join(gone, "; "))
	}
	return objects, nil
}

// readOne returns the sanitized object, or why it is missing, or an error.
func readOne(ctx context.Context, c client.Client, namespace string, ref Ref) (*unstructured.Unstructured, string, error) {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", ref, err)
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gv.WithKind(ref.Kind))
	namespaced, err := c.IsObjectNamespaced(u)
	switch {
	case meta.IsNoMatchError(err):
		return nil, ref.String() + ": kind not served by the API server", nil
	case err != nil:
		return nil, "", fmt.Errorf("%s: %w", ref, err)
	case !namespaced:
		return nil, "", fmt.Errorf("%s is cluster-scoped: a snapshot holds objects of one namespace", ref)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: ref.Name}, u); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, ref.String(), nil
		}
		return nil, "", fmt.Errorf("reading %s: %w", ref, redact(ref, err))
	}
	return Sanitize(u), "", nil
}

func encode(namespace string, takenAt time.Time, objects []*unstructured.Unstructured) ([]byte, error) {
	doc := document{APIVersion: docVersion, Namespace: namespace, TakenAt: takenAt}
	for _, o := range objects {
		raw, err := o.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", RefOf(o), err)
		}
		doc.Objects = append(doc.Objects, raw)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(doc); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decode(payload []byte) (*document, []*unstructured.Unstructured, error) {
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		return nil, nil, err
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, nil, err
	}
	var doc document
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, nil, err
	}
	if doc.APIVersion != docVersion {
		return nil, nil, fmt.Errorf("unknown snapshot format %q", doc.APIVersion)
	}
	objects := make([]*unstructured.Unstructured, 0, len(doc.Objects))
	for i, o := range doc.Objects {
		// UnmarshalJSON keeps integers as int64, as the client does for live objects.
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(o); err != nil {
			return nil, nil, fmt.Errorf("object %d: %w", i, err)
		}
		objects = append(objects, u)
	}
	return &doc, objects, nil
}

func split(b []byte, size int) [][]byte {
	var out [][]byte
	for len(b) > size {
		out = append(out, b[:size])
		b = b[size:]
	}
	return append(out, b)
}

// stat reads part 0 only. ErrNotFound when it does not exist.
func stat(ctx context.Context, c client.Reader, namespace, name string) (*Snapshot, error) {
	s, err := getSecret(ctx, c, namespace, partName(name, 0))
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%w: %s in namespace %s", ErrNotFound, name, namespace)
	}
	if err != nil {
		return nil, fmt.Errorf("reading snapshot %s: %w", name, err)
	}
	if s.Type != SecretType || s.Labels[LabelSnapshot] != name {
		return nil, fmt.Errorf("snapshot %s: Secret %s exists and is not a part of it (type %q)", name, s.Name, s.Type)
	}
	parts, err1 := strconv.Atoi(s.Annotations[AnnotationParts])
	objects, err2 := strconv.Atoi(s.Annotations[AnnotationObjects])
	takenAt, err3 := time.Parse(time.RFC3339, s.Annotations[AnnotationTakenAt])
	if err := errors.Join(err1, err2, err3); err != nil || parts < 1 || s.Annotations[AnnotationFormat] != format {
		return nil, fmt.Errorf("%w: %s: part 0 has unreadable annotations (format %q)", ErrIncomplete, name, s.Annotations[AnnotationFormat])
	}
	return &Snapshot{Name: name, Objects: objects, Parts: parts, TakenAt: takenAt}, nil
}

func load(ctx context.Context, c client.Reader, namespace, name string) ([]*unstructured.Unstructured, *Snapshot, error) {
	snap, err := stat(ctx, c, namespace, name)
	if err != nil {
		return nil, nil, err
	}
	var payload []byte
	var digest string
	for i := range snap.Parts {
		s, err := getSecret(ctx, c, namespace, partName(name, i))
		if apierrors.IsNotFound(err) {
			return nil, nil, fmt.Errorf("%w: %s: part %d of %d (Secret %s) is missing", ErrIncomplete, name, i+1, snap.Parts, partName(name, i))
		}
		if err != nil {
			return nil, nil, fmt.Errorf("reading snapshot %s: %w", name, err)
		}
		if i == 0 {
			digest = s.Annotations[AnnotationDigest]
		}
		if s.Type != SecretType || s.Labels[LabelSnapshot] != name || s.Annotations[AnnotationPart] != strconv.Itoa(i) || s.Annotations[AnnotationDigest] != digest {
			return nil, nil, fmt.Errorf("%w: %s: Secret %s is not part %d of this snapshot", ErrIncomplete, name, s.Name, i+1)
		}
		payload = append(payload, s.Data[PayloadKey]...)
	}
	sum := sha256.Sum256(payload)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != digest {
		return nil, nil, fmt.Errorf("%w: %s: the parts do not match the digest recorded in part 0", ErrIncomplete, name)
	}
	doc, objects, err := decode(payload)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: decoding: %v", ErrIncomplete, name, err)
	}
	if len(objects) != snap.Objects || doc.Namespace != namespace {
		return nil, nil, fmt.Errorf("%w: %s: holds %d objects of namespace %q, part 0 says %d of %q", ErrIncomplete, name, len(objects), doc.Namespace, snap.Objects, namespace)
	}
	snap.Bytes = len(payload)
	return objects, snap, nil
}

// deleteParts deletes the Secrets of snapshot name: part 0 first when withPart0, and every other
// Secret of type SecretType labelled with the snapshot.
func deleteParts(ctx context.Context, c client.Client, namespace, name string, withPart0 bool) error {
	if withPart0 {
		p0 := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: partName(name, 0)}}
		if err := c.Delete(ctx, p0); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err := c.List(ctx, list, client.InNamespace(namespace), client.MatchingLabels{LabelSnapshot: name}); err != nil {
		return err
	}
	names := []string{}
	for _, item := range list.Items {
		if t, _, _ := unstructured.NestedString(item.Object, "type"); t == string(SecretType) {
			names = append(names, item.GetName())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: n}}
		if err := c.Delete(ctx, s); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// getSecret reads a Secret through an unstructured object, which controller-runtime's clients
// never serve from a cache: a stale read could take a complete snapshot for a missing one.
func getSecret(ctx context.Context, c client.Reader, namespace, name string) (*corev1.Secret, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, u); err != nil {
		return nil, err
	}
	s := &corev1.Secret{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, s); err != nil {
		return nil, fmt.Errorf("decoding Secret %s: %w", name, err)
	}
	return s, nil
}

func partName(name string, i int) string { return name + "-" + strconv.Itoa(i) }

func validateName(name string) error {
	if errs := validation.IsValidLabelValue(name); len(errs) > 0 || name == "" {
		return fmt.Errorf("invalid snapshot name %q: it is used as a label value: %s", name, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(partName(name, 99)); len(errs) > 0 {
		return fmt.Errorf("invalid snapshot name %q: %s", name, strings.Join(errs, "; "))
	}
	return nil
}
