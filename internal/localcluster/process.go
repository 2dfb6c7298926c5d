package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

const (
	stateFile = "state.json"
	logsDir   = "logs"
	// stopGrace is how long a process may take to exit on SIGTERM before SIGKILL.
	stopGrace = 10 * time.Second
)

// ErrNotRunning is returned by Attach for a dir whose cluster is not running.
var ErrNotRunning = errors.New("local cluster is not running")

// process is one control-plane process; its exported fields are its record in state.json.
type process struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	// Path is the binary, to tell the process from a later one that got its pid.
	Path string `json:"path"`
	Log  string `json:"log"`

	// args are its flags, for a restart; nil for a process that another program started.
	args []string
	// exited is closed once this program has reaped the process; nil for a
	// process that another program started (see Attach).
	exited  chan struct{}
	waitErr error
}

// state is what state.json holds, for a later Attach or StopDir.
type state struct {
	Server     string     `json:"server"`
	Kubeconfig string     `json:"kubeconfig"`
	Processes  []*process `json:"processes"`
}

// run starts a control-plane process with its output going to Dir/logs/NAME.log.
func (c *Cluster) run(name, binary string, args ...string) error {
	logPath := filepath.Join(c.dir, logsDir, name+".log")
	out, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer out.Close() // the child has its own copy
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if c.detach {
		// A session of their own: no terminal signal or hangup reaches them,
		// and they outlive this program.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		// A group of their own so that Stop can signal everything they started;
		// killed with this program so that a crashed test leaves nothing behind.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{Name: name, PID: cmd.Process.Pid, Path: binary, Log: logPath, args: args, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	c.procs = append(c.procs, p)
	c.logf("started %s (pid %d, log %s)", name, p.PID, logPath)
	// Recorded at once, so that a cluster whose start failed half-way can still be stopped.
	return c.saveState()
}

// running tells whether the process is still there.
func (p *process) running() bool {
	if p.exited != nil {
		select {
		case <-p.exited:
			return false
		default:
			return true
		}
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.PID))
	return err == nil && bytes.HasPrefix(cmdline, []byte(p.Path+"\x00"))
}

// exited returns a process that is no longer running, if any.
func (c *Cluster) exited() *process {
	for _, p := range c.procs {
		if !p.running() {
			return p
		}
	}
	return nil
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func (c *Cluster) saveState() error {
	data, err := json.MarshalIndent(state{Server: c.server, Kubeconfig: c.kubeconfigPath, Processes: c.procs}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.dir, stateFile), data, 0o644)
}

// loadState reads dir/state.json into a Cluster that can check and stop the
// processes it names.
func loadState(dir string) (*Cluster, error) {
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, err
	}
	var s state
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, stateFile), err)
	}
	return &Cluster{dir: dir, server: s.Server, kubeconfigPath: s.Kubeconfig, procs: s.Processes}, nil
}

// Attach returns the cluster that Start left running in dir, typically with
// Detach. It returns ErrNotRunning if none was started there or it was
// stopped, and an error naming the process that died if only part of it runs
// (StopDir cleans that up).
func Attach(dir string) (*Cluster, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	c, err := loadState(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotRunning
	}
	if err != nil {
		return nil, err
	}
	if p := c.exited(); p != nil {
		return nil, fmt.Errorf("%s of the cluster in %s is not running (see %s)", p.Name, dir, p.Log)
	}
	if err := c.loadKubeconfig(); err != nil {
		return nil, err
	}
	return c, nil
}

// StopDir stops whatever is left running of the cluster in dir. It does
// nothing if there is none, and keeps the dir so that Start can resume it.
func StopDir(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	c, err := loadState(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return c.Stop()
}

// Stop ends every process (SIGTERM, then SIGKILL to its whole group after a
// grace period) and forgets them. It removes Dir if Start made it. Calling it
// again does nothing.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() { c.stopErr = c.stop() })
	return c.stopErr
}

func (c *Cluster) stop() error {
	began := time.Now()
	// etcd last: the apiserver takes long to shut down without it.
	var etcd, rest []*process
	for _, p := range c.procs {
		if p.Name == "etcd" {
			etcd = append(etcd, p)
		} else {
			rest = append(rest, p)
		}
	}
	for _, group := range [][]*process{rest, etcd} {
		if err := terminate(group); err != nil {
			return err
		}
	}
	c.logf("stopped in %s", time.Since(began).Round(time.Millisecond))
	if c.removeDir {
		return os.RemoveAll(c.dir)
	}
	if err := os.Remove(filepath.Join(c.dir, stateFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// terminate sends SIGTERM to the processes' groups, then SIGKILL to those
// still running after stopGrace, and waits for them to exit.
func terminate(procs []*process) error {
	signal(procs, syscall.SIGTERM)
	if waitExited(procs, stopGrace) {
		return nil
	}
	signal(procs, syscall.SIGKILL)
	if waitExited(procs, stopGrace) {
		return nil
	}
	return fmt.Errorf("still running after SIGKILL: %v", running(procs))
}

func signal(procs []*process, sig syscall.Signal) {
	for _, p := range procs {
		if p.running() {
			// Each process leads its own group; a negative pid signals the group.
			_ = syscall.Kill(-p.PID, sig)
		}
	}
}

func waitExited(procs []*process, timeout time.Duration) bool {
	return wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return len(running(procs)) == 0, nil
	}) == nil
}

// running names the processes still running.
func running(procs []*process) []string {
	var names []string
	for _, p := range procs {
		if p.running() {
			names = append(names, p.Name)
		}
	}
	return names
}
