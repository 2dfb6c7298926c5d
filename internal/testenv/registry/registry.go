// Package registry runs Debian's docker-registry (the CNCF distribution registry) on loopback for
// the tests that push and pull the operator's image for real.
package registry

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/mastodon-operator/mastodon-operator/internal/testenv/redisserver"
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
	for attempt := 0; attempt < 3; attempt++ {
		if addr, stop, err = startOnce(bin); err == nil {
			return addr, stop, nil
		}
	}
	return "", nil, err
}

func startOnce(bin string) (string, func(), error) {
	port, err := redisserver.FreePort()
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "docker-registry-")
	if err != nil {
		return "", nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(config, filepath.Join(dir, "storage"), addr)), 0o600); err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "serve", cfg)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
		_ = os.RemoveAll(dir)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-exited:
			_ = os.RemoveAll(dir)
			return "", nil, fmt.Errorf("docker-registry exited (%v): %s", err, out.String())
		default:
		}
		// The registry API's base endpoint answers 200 once it serves.
		if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr, stop, nil
			}
		}
	}
	stop()
	return "", nil, fmt.Errorf("docker-registry did not serve on %s within 10s: %s", addr, out.String())
}
