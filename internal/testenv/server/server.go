// Package server runs a server binary on a free loopback port for the tests that talk to a real
// server (Debian's redis-server, docker-registry), and stops it with the test.
package server

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// startTimeout is how long a server has to start serving.
const startTimeout = 10 * time.Second

// Start runs the command that command makes for a free loopback address and a temporary
// directory (removed when it stops), and returns once ready says it serves. A port taken
// between finding it free and the server binding it is tried again. name is for errors.
func Start(name string, command func(addr, dir string) (*exec.Cmd, error), ready func(addr string) bool) (addr string, stop func(), err error) {
	for attempt := 0; attempt < 3; attempt++ {
		if addr, stop, err = startOnce(name, command, ready); err == nil {
			return addr, stop, nil
		}
	}
	return "", nil, err
}

func startOnce(name string, command func(addr, dir string) (*exec.Cmd, error), ready func(addr string) bool) (string, func(), error) {
	port, err := FreePort()
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", name+"-")
	if err != nil {
		return "", nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd, err := command(addr, dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, err
	}
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
	for deadline := time.Now().Add(startTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-exited:
			_ = os.RemoveAll(dir)
			return "", nil, fmt.Errorf("%s exited (%v): %s", name, err, out.String())
		default:
		}
		if ready(addr) {
			return addr, stop, nil
		}
	}
	stop()
	return "", nil, fmt.Errorf("%s did not serve on %s within %s: %s", name, addr, startTimeout, out.String())
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
