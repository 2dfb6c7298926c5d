// Package kwok holds the kwok Stages that make the local cluster's fake nodes
// and pods behave like kubelet-run ones: nodes become Ready and keep a lease,
// pods become Ready, Job pods complete, deleted pods go away.
//
// The YAML files are kwok's "fast" stage set, copied unchanged from
// kustomize/stage/ of sigs.k8s.io/kwok at the version pinned in
// hack/tools/kwok/go.mod (node/fast/node-initialize.yaml,
// node/heartbeat-with-lease/node-heartbeat-with-lease.yaml and
// pod/fast/pod-{ready,complete,delete}.yaml), so that running a cluster needs
// no module cache. One change: pod-ready.yaml takes the general set's delay
// annotation (pod-ready.stage.kwok.x-k8s.io/delay), so a test can make pods
// start slowly. Copy them again after a kwok bump; the module is at
// $(go -C hack/tools/kwok list -m -f '{{.Dir}}' sigs.k8s.io/kwok).
package kwok

import (
	"bytes"
	"embed"
	"io/fs"
)

//go:embed *.yaml
var stages embed.FS

// Config returns all the stages as one multi-document YAML file for kwok's --config.
func Config() []byte {
	files, err := fs.Glob(stages, "*.yaml")
	if err != nil {
		panic(err) // the pattern is constant and valid
	}
	var docs [][]byte
	for _, name := range files {
		doc, err := stages.ReadFile(name)
		if err != nil {
			panic(err) // embedded files are always readable
		}
		docs = append(docs, doc)
	}
	return bytes.Join(docs, []byte("\n---\n"))
}
