// Package docs checks what the documentation tells users to apply: every MastodonMigration and
// MastodonRollback sample in README.md and docs/ is one the API server accepts (each is applied
// with a server-side dry run to an API server, envtest, that has the CRDs, so the schema,
// defaults and CEL rules judge it), and the GKE guide's values give the ServiceAccount that its
// Workload Identity binding names.
package docs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// group is the API group of the operator's kinds: a sample of another group (a Secret, a
// HelmRelease) is not the API server's to judge here.
const group = "migration.mastodon-operator.io"

// k8sClient reaches the API server of TestMain's envtest.
var k8sClient client.Client

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run `make test`, or set it to the output of hack/tools/build.sh")
		return 1
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(repoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	if k8sClient, err = client.New(cfg, client.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// sample is one YAML document of a ```yaml block of a Markdown file.
type sample struct {
	file string
	line int // of the block's opening fence
	obj  *unstructured.Unstructured
}

func (s sample) String() string {
	return fmt.Sprintf("%s:%d %s %s", s.file, s.line, s.obj.GetKind(), s.obj.GetName())
}

// samples returns the documents of the operator's group in the ```yaml blocks of a Markdown file.
func samples(root, file string) ([]sample, error) {
	f, err := os.Open(filepath.Join(root, file))
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var (
		out   []sample
		block strings.Builder
		start int
		in    bool
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case !in && strings.TrimSpace(line) == "```yaml":
			in, start = true, n
			block.Reset()
		case in && strings.TrimSpace(line) == "```":
			in = false
			docs, err := documents(block.String())
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", file, start, err)
			}
			for _, d := range docs {
				out = append(out, sample{file: file, line: start, obj: d})
			}
		case in:
			block.WriteString(line + "\n")
		}
	}
	return out, sc.Err()
}

func documents(text string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(text), 4096)
	for {
		var o map[string]any
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		u := &unstructured.Unstructured{Object: o}
		if o != nil && strings.HasPrefix(u.GetAPIVersion(), group+"/") {
			out = append(out, u)
		}
	}
}

// TestDocSamplesAreAccepted applies each sample with a server-side dry run: what the API server
// refuses fails here with the file, line and the API server's message.
func TestDocSamplesAreAccepted(t *testing.T) {
	root := repoRoot()
	files := []string{"README.md"}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	more, err := filepath.Glob(filepath.Join(root, "docs", "*", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range append(docs, more...) {
		rel, _ := filepath.Rel(root, p)
		files = append(files, rel)
	}
	var all []sample
	perFile := map[string]int{}
	for _, f := range files {
		s, err := samples(root, f)
		if err != nil {
			t.Fatal(err)
		}
		perFile[f] = len(s)
		all = append(all, s...)
	}
	// The README's "API in brief" has both kinds; each strategy guide has its migration.
	for _, f := range []string{"README.md", "docs/strategies/bluegreen.md", "docs/strategies/inplace.md", "docs/strategies/maintenance.md"} {
		if perFile[f] == 0 {
			t.Errorf("%s has no MastodonMigration or MastodonRollback sample", f)
		}
	}

	ctx := context.Background()
	namespaces := map[string]bool{}
	for _, s := range all {
		ns := s.obj.GetNamespace()
		if ns == "" {
			s.obj.SetNamespace("default")
		} else if !namespaces[ns] {
			namespaces[ns] = true
			err := k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
		t.Run(s.String(), func(t *testing.T) {
			err := k8sClient.Patch(ctx, s.obj, client.Apply, client.DryRunAll, client.FieldOwner("docs-test"), client.ForceOwnership, client.FieldValidation("Strict"))
			if err != nil {
				t.Errorf("%s: the API server refuses it: %v", s, err)
			}
		})
	}
	t.Logf("%d samples in %d files accepted", len(all), len(files))
}

// TestAnInvalidSampleIsRefused makes sure the dry run judges: a sample that breaks a CEL rule,
// or misspells a field, must fail, or the test above would pass on anything.
func TestAnInvalidSampleIsRefused(t *testing.T) {
	const head = `apiVersion: migration.mastodon-operator.io/v1alpha1
kind: MastodonMigration
metadata: {name: invalid, namespace: default}
spec:
  source: {web: {deployment: w}, streaming: {deployment: s}, sidekiq: [{deployment: q}]}
  release: {chart: {repository: "https://mastodon.github.io/helm-charts/", name: mastodon, version: "1.0.2"}}
`
	for tail, want := range map[string]string{
		"  rollbackLevel: 3\n":            "confirmDataLoss",
		"  rollback: {automatik: true}\n": "automatik",
	} {
		docs, err := documents(head + tail)
		if err != nil || len(docs) != 1 {
			t.Fatalf("%d documents, %v", len(docs), err)
		}
		err = k8sClient.Patch(context.Background(), docs[0], client.Apply, client.DryRunAll, client.FieldOwner("docs-test"), client.ForceOwnership, client.FieldValidation("Strict"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q was not refused for %s: %v", tail, want, err)
		}
	}
}
