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

	"golang.org/x/crypto/bcrypt"

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

// htpasswdAuth makes the registry ask for a user and password (an htpasswd file, bcrypt only).
const htpasswdAuth = `auth:
  htpasswd: {realm: test, path: %q}
`

// Start runs docker-registry on a free loopback port and returns its host:port.
func Start() (addr string, stop func(), err error) {
	return start("", "")
}

// StartWithAuth runs docker-registry as Start does, refusing every request without the basic
// credentials user and password, as a registry a user pushes to does.
func StartWithAuth(user, password string) (addr string, stop func(), err error) {
	if user == "" || password == "" {
		return "", nil, errors.New("a user and a password are needed")
	}
	return start(user, password)
}

func start(user, password string) (addr string, stop func(), err error) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return "", nil, errors.New("docker-registry is not installed: `make test` installs it (hack/test-deps.sh, Debian's docker-registry package)")
	}
	return server.Start("docker-registry", func(addr, dir string) (*exec.Cmd, error) {
		cfg := filepath.Join(dir, "config.yml")
		text := fmt.Appendf(nil, config, filepath.Join(dir, "storage"), addr)
		if user != "" {
			hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
			if err != nil {
				return nil, err
			}
			htpasswd := filepath.Join(dir, "htpasswd")
			if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
				return nil, err
			}
			text = fmt.Appendf(text, htpasswdAuth, htpasswd)
		}
		if err := os.WriteFile(cfg, text, 0o600); err != nil {
			return nil, err
		}
		return exec.Command(bin, "serve", cfg), nil
	}, func(addr string) bool {
		// The registry API's base endpoint answers 200 once it serves (401 without credentials).
		resp, err := http.Get("http://" + addr + "/v2/")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK || user != "" && resp.StatusCode == http.StatusUnauthorized
	})
}
