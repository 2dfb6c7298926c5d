// Package redisserver runs Debian's redis-server for the tests that read Redis for real (the
// Sidekiq provider's, and the end-to-end analysis of Sidekiq's failures).
package redisserver

import (
	"errors"
	"net"
	"os/exec"

	"github.com/mastodon-operator/mastodon-operator/internal/testenv/server"
)

// Bin is the redis-server binary, or why there is none.
func Bin() (string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errors.New("redis-server is not installed: `make test` installs it (hack/test-deps.sh, Debian's redis-server package)")
	}
	return bin, nil
}

// Start runs redis-server on a free loopback port, without persistence; extra are more
// arguments.
func Start(extra ...string) (addr string, stop func(), err error) {
	bin, err := Bin()
	if err != nil {
		return "", nil, err
	}
	return server.Start("redis-server", func(addr, dir string) (*exec.Cmd, error) {
		_, port, _ := net.SplitHostPort(addr)
		args := append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir}, extra...)
		return exec.Command(bin, args...), nil
	}, func(addr string) bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})
}

// FreePort is a loopback port nothing listens on now.
func FreePort() (int, error) { return server.FreePort() }
