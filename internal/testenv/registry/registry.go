// Package registry runs Debian's docker-registry (the CNCF distribution registry) on loopback for
// the tests that push and pull the operator's image for real.
package registry

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/mastodon-operator/mastodon-operator/internal/testenv/server"
)

// config is a registry on loopback without authentication, storing blobs in a temporary directory.
const config = `version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: %q}
  delete: {enabled: true}
http:
  addr: %s
`

// Start runs docker-registry on a free loopback port and returns its host:port.
func Start() (addr string, stop func(), err error) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return "", nil, errors.New("docker-registry is not installed: `make test` installs it (hack/test-deps.sh, Debian's docker-registry package)")
	}
	return server.Start("docker-registry", func(addr, dir string) (*exec.Cmd, error) {
		cfg := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(cfg, fmt.Appendf(nil, config, filepath.Join(dir, "storage"), addr), 0o600); err != nil {
			return nil, err
		}
		return exec.Command(bin, "serve", cfg), nil
	}, func(addr string) bool {
		// The registry API's base endpoint answers 200 once it serves.
		resp, err := http.Get("http://" + addr + "/v2/")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
