// Package redisserver runs Debian's redis-server for the tests that read Redis for real (the
// Sidekiq provider's, and the end-to-end analysis of Sidekiq's failures).
package redisserver

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"time"
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
// arguments. A port taken between finding it free and the server binding it is tried again.
func Start(extra ...string) (addr string, stop func(), err error) {
	bin, err := Bin()
	if err != nil {
		return "", nil, err
	}
	for attempt := 0; attempt < 3; attempt++ {
		if addr, stop, err = startOnce(bin, extra...); err == nil {
			return addr, stop, nil
		}
	}
	return "", nil, err
}

func startOnce(bin string, extra ...string) (string, func(), error) {
	port, err := FreePort()
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "redis-server-")
	if err != nil {
		return "", nil, err
	}
	args := append([]string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir}, extra...)
	cmd := exec.Command(bin, args...)
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
	addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-exited:
			_ = os.RemoveAll(dir)
			return "", nil, fmt.Errorf("redis-server exited (%v): %s", err, out.String())
		default:
		}
		if c, err := net.Dial("tcp", addr); err == nil {
			_ = c.Close()
			return addr, stop, nil
		}
	}
	stop()
	return "", nil, fmt.Errorf("redis-server did not listen on %s within 10s: %s", addr, out.String())
}

// FreePort is a loopback port nothing listens on now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
