// Package testenv starts one real API server (envtest: etcd and kube-apiserver from
// KUBEBUILDER_ASSETS, which `make test` sets to the output of hack/tools/build.sh) per test
// binary, on first use, for the tests of packages whose behaviour the API server decides.
package testenv

import (
	"os"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Shared is an API server shared by the tests of one package.
type Shared struct {
	// CRDs are directories of CustomResourceDefinitions to install (they must exist).
	CRDs []string

	once sync.Once
	env  *envtest.Environment
	cfg  *rest.Config
	err  error
}

// Config starts the API server on first use and returns its config; the test fails when the
// binaries are not there or the server does not start.
func (s *Shared) Config(t testing.TB) *rest.Config {
	t.Helper()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run `make test`, or set it to the output of hack/tools/build.sh")
	}
	s.once.Do(func() {
		env := &envtest.Environment{CRDDirectoryPaths: s.CRDs, ErrorIfCRDPathMissing: len(s.CRDs) > 0}
		if s.cfg, s.err = env.Start(); s.err == nil {
			s.env = env
		}
	})
	if s.err != nil {
		t.Fatalf("starting envtest: %v", s.err)
	}
	return s.cfg
}

// Stop stops the API server if it was started; TestMain calls it after m.Run.
func (s *Shared) Stop() {
	if s.env != nil {
		_ = s.env.Stop()
	}
}
