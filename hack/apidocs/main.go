// Command apidocs writes the API reference (docs/api.md) from the generated CRDs, whose
// openAPIV3Schema carries the types' doc comments, defaults, enums, bounds and CEL rules:
// `hack/generate.sh` runs it, and test/manifests fails when docs/api.md is stale.
//
// Usage: go run ./hack/apidocs -o docs/api.md config/crd/bases/*.yaml
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

func main() {
	out := flag.String("o", "docs/api.md", "Where to write the Markdown.")
	flag.Parse()
	if flag.NArg() == 0 {
		fail(fmt.Errorf("usage: apidocs -o FILE CRD.yaml..."))
	}
	crds, err := readCRDs(flag.Args())
	if err != nil {
		fail(err)
	}
	if err := os.WriteFile(*out, []byte(Render(crds)), 0o644); err != nil {
		fail(err)
	}
}

// readCRDs reads one CustomResourceDefinition per file, sorted by kind.
func readCRDs(paths []string) ([]apiextensionsv1.CustomResourceDefinition, error) {
	var crds []apiextensionsv1.CustomResourceDefinition
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(raw, &crd); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if crd.Kind != "CustomResourceDefinition" {
			return nil, fmt.Errorf("%s: a %s, not a CustomResourceDefinition", p, crd.Kind)
		}
		crds = append(crds, crd)
	}
	sort.Slice(crds, func(i, j int) bool { return crds[i].Spec.Names.Kind < crds[j].Spec.Names.Kind })
	return crds, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "apidocs:", err)
	os.Exit(1)
}
