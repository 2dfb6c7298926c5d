// Package localcluster runs a real Kubernetes control plane on loopback for
// e2e tests, the demo and benchmarks: etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler, with kwok playing the kubelet
// of fake nodes. Pods are scheduled, become Ready and Job pods complete, but
// no container runs. The binaries are the ones hack/tools/build.sh builds.
package localcluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/mastodon-operator/mastodon-operator/hack/kwok"
)

// BinDirEnv names the environment variable that holds the binaries' dir, as
// in `export MASTODON_OPERATOR_BIN_DIR=$(hack/tools/build.sh)`.
const BinDirEnv = "MASTODON_OPERATOR_BIN_DIR"

const (
	// startTimeout bounds Start on a slow machine; a healthy start takes seconds.
	startTimeout = 2 * time.Minute
	// pollInterval is how often Start checks readiness.
	pollInterval = 50 * time.Millisecond

	// advertiseAddress is what the kubernetes Service points at. The apiserver
	// refuses a loopback address here; this one (TEST-NET-2, RFC 5737) is
	// never routed and nothing in this cluster dials it.
	advertiseAddress = "198.51.100.1"
	serviceCIDR      = "10.96.0.0/16"
	// kubernetesServiceIP, the first of serviceCIDR, is the kubernetes
	// Service's, which the serving certificate must name.
	kubernetesServiceIP = "10.96.0.1"

	// kwokNodeAnnotation marks the nodes kwok manages.
	kwokNodeAnnotation = "kwok.x-k8s.io/node"
)

// binaries are the ones Start runs, all from BinDir.
var binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

// Node is a fake node to create.
type Node struct {
	Name   string
	Labels map[string]string
}

// Options configure Start.
type Options struct {
	// BinDir holds the binaries; $MASTODON_OPERATOR_BIN_DIR if empty.
	BinDir string
	// Dir holds the cluster's state: pki/, etcd/, logs/, kubeconfig and
	// state.json. If empty, a temporary dir that Stop removes. Keys and etcd
	// data already in Dir are reused, so a stopped cluster starts again as
	// it was; remove Dir for a fresh one.
	Dir string
	// Nodes are the fake nodes to create, each with room for thousands of
	// pods. None is fine for API-only use.
	Nodes []Node
	// Detach starts the processes in a session of their own so that they
	// outlive this program; Attach and StopDir find them again. Needs Dir.
	Detach bool
	// Logf, if set, receives progress messages.
	Logf func(format string, args ...any)
}

// Cluster is a running local cluster.
type Cluster struct {
	dir            string
	removeDir      bool // Start made dir, so Stop removes it
	detach         bool
	server         string // the apiserver's URL
	kubeconfigPath string
	config         *rest.Config
	procs          []*process // in start order
	progress       func(format string, args ...any)

	stopOnce sync.Once
	stopErr  error
}

// Start starts a cluster and returns once it is ready: the API is served,
// the default ServiceAccount exists and every node is Ready and schedulable.
// If ctx ends first, or a process exits, Start stops what it started and
// fails, with the end of the failed process's log.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	began := time.Now()

	binDir := opts.BinDir
	if binDir == "" {
		binDir = os.Getenv(BinDirEnv)
	}
	if binDir == "" {
		return nil, fmt.Errorf("no binaries: set %s=$(hack/tools/build.sh) or Options.BinDir", BinDirEnv)
	}
	for _, name := range binaries {
		if _, err := os.Stat(filepath.Join(binDir, name)); err != nil {
			return nil, fmt.Errorf("%w: run hack/tools/build.sh", err)
		}
	}

	c := &Cluster{dir: opts.Dir, detach: opts.Detach, progress: opts.Logf}
	if c.dir == "" {
		if opts.Detach {
			return nil, errors.New("a detached cluster needs Options.Dir")
		}
		if c.dir, err = os.MkdirTemp("", "localcluster-"); err != nil {
			return nil, err
		}
		c.removeDir = true
	} else {
		if c.dir, err = filepath.Abs(c.dir); err != nil {
			return nil, err
		}
		switch _, err := Attach(c.dir); {
		case err == nil:
			return nil, fmt.Errorf("a cluster is already running in %s", c.dir)
		case !errors.Is(err, ErrNotRunning):
			c.logf("stopping what is left of an earlier cluster in %s: %v", c.dir, err)
			if err := StopDir(c.dir); err != nil {
				return nil, err
			}
		}
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Stop())
		}
	}()
	if err := c.start(ctx, binDir, opts.Nodes); err != nil {
		return nil, err
	}
	c.logf("cluster ready in %s: %s", time.Since(began).Round(time.Millisecond), c.server)
	return c, nil
}

// ports are the loopback ports of one cluster.
type ports struct {
	etcd, etcdPeer, apiserver, controllerManager, scheduler, kwok int
}

func (c *Cluster) start(ctx context.Context, binDir string, nodes []Node) error {
	if err := os.MkdirAll(filepath.Join(c.dir, logsDir), 0o755); err != nil {
		return err
	}
	if err := ensurePKI(filepath.Join(c.dir, pkiDir)); err != nil {
		return fmt.Errorf("making certificates: %w", err)
	}
	free, err := freePorts(6)
	if err != nil {
		return err
	}
	port := ports{free[0], free[1], free[2], free[3], free[4], free[5]}
	bin := func(name string) string { return filepath.Join(binDir, name) }

	etcdURL, err := c.startEtcd(ctx, bin("etcd"), port)
	if err != nil {
		return err
	}
	client, err := c.startAPIServer(ctx, bin("kube-apiserver"), etcdURL, port)
	if err != nil {
		return err
	}
	// The rest need only the API; they start together.
	if err := c.startControllerManager(bin("kube-controller-manager"), port); err != nil {
		return err
	}
	if err := c.startScheduler(bin("kube-scheduler"), port); err != nil {
		return err
	}
	if err := c.startKwok(bin("kwok"), port); err != nil {
		return err
	}
	for i, n := range nodes {
		_, err := client.CoreV1().Nodes().Create(ctx, fakeNode(n, i), metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating node %s: %w", n.Name, err)
		}
	}
	return c.waitReady(ctx, client, port, nodes)
}

func (c *Cluster) startEtcd(ctx context.Context, binary string, port ports) (url string, err error) {
	url = loopbackURL("http", port.etcd)
	peerURL := loopbackURL("http", port.etcdPeer)
	if err := c.run("etcd", binary,
		"--name=local",
		"--data-dir="+filepath.Join(c.dir, "etcd"),
		"--listen-client-urls="+url, "--advertise-client-urls="+url,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=local="+peerURL,
		// A throwaway cluster: speed over durability.
		"--unsafe-no-fsync",
	); err != nil {
		return "", err
	}
	return url, c.waitFor(ctx, "etcd", func(ctx context.Context) error {
		return getOK(ctx, http.DefaultClient, url+"/health")
	})
}

// startAPIServer starts the apiserver, writes the kubeconfig and returns a
// client once the API is ready.
func (c *Cluster) startAPIServer(ctx context.Context, binary, etcdURL string, port ports) (*kubernetes.Clientset, error) {
	c.server = loopbackURL("https", port.apiserver)
	if err := c.run("kube-apiserver", binary,
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(port.apiserver),
		"--advertise-address="+advertiseAddress,
		"--tls-cert-file="+c.pki(servingCertFile), "--tls-private-key-file="+c.pki(servingKeyFile),
		"--client-ca-file="+c.pki(caCertFile),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+c.pki(serviceAccountKey),
		"--service-account-signing-key-file="+c.pki(serviceAccountKey),
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range="+serviceCIDR,
		// Charts may ask for privileged containers; nothing runs them here.
		"--allow-privileged=true",
	); err != nil {
		return nil, err
	}
	if err := c.writeKubeconfig(); err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(c.config)
	if err != nil {
		return nil, err
	}
	return client, c.waitAPIServer(ctx, client)
}

// waitAPIServer waits until the apiserver says it is ready.
func (c *Cluster) waitAPIServer(ctx context.Context, client *kubernetes.Clientset) error {
	return c.waitFor(ctx, "kube-apiserver", func(ctx context.Context) error {
		_, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	})
}

func (c *Cluster) startControllerManager(binary string, port ports) error {
	return c.run("kube-controller-manager", binary,
		"--kubeconfig="+c.kubeconfigPath,
		"--authentication-kubeconfig="+c.kubeconfigPath, "--authorization-kubeconfig="+c.kubeconfigPath,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(port.controllerManager),
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+c.pki(serviceAccountKey),
		"--root-ca-file="+c.pki(caCertFile),
		"--cluster-signing-cert-file="+c.pki(caCertFile), "--cluster-signing-key-file="+c.pki(caKeyFile),
		// The defaults (20 QPS) would pace creating hundreds of pods.
		"--kube-api-qps=500", "--kube-api-burst=1000",
	)
}

func (c *Cluster) startScheduler(binary string, port ports) error {
	config := filepath.Join(c.dir, "kube-scheduler.yaml")
	if err := os.WriteFile(config, fmt.Appendf(nil, schedulerConfigTemplate, c.kubeconfigPath), 0o644); err != nil {
		return err
	}
	return c.run("kube-scheduler", binary,
		"--config="+config,
		"--authentication-kubeconfig="+c.kubeconfigPath, "--authorization-kubeconfig="+c.kubeconfigPath,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(port.scheduler),
	)
}

func (c *Cluster) startKwok(binary string, port ports) error {
	config := filepath.Join(c.dir, "kwok.yaml")
	if err := os.WriteFile(config, kwok.Config(), 0o644); err != nil {
		return err
	}
	return c.run("kwok", binary,
		"--kubeconfig="+c.kubeconfigPath,
		"--config="+config,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector="+kwokNodeAnnotation+"=fake",
		// Nodes point at kwok's own server, so what the apiserver asks of a
		// "kubelet" (logs, exec) stays on loopback.
		"--node-ip=127.0.0.1", "--node-port="+strconv.Itoa(port.kwok),
		"--server-address=127.0.0.1:"+strconv.Itoa(port.kwok),
		"--tls-cert-file="+c.pki(servingCertFile), "--tls-private-key-file="+c.pki(servingKeyFile),
		// Leases keep the nodes Ready between kwok's rare status heartbeats.
		"--node-lease-duration-seconds=40",
	)
}

// waitReady waits until the controllers serve, pods can be created and the
// nodes take them.
func (c *Cluster) waitReady(ctx context.Context, client *kubernetes.Clientset, port ports, nodes []Node) error {
	// A bare TLS check: both serve a self-signed certificate made in memory.
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if err := c.waitFor(ctx, "kube-controller-manager", func(ctx context.Context) error {
		return getOK(ctx, insecure, loopbackURL("https", port.controllerManager)+"/healthz")
	}); err != nil {
		return err
	}
	if err := c.waitFor(ctx, "kube-scheduler", func(ctx context.Context) error {
		return getOK(ctx, insecure, loopbackURL("https", port.scheduler)+"/readyz")
	}); err != nil {
		return err
	}
	// Pods are refused until their namespace's default ServiceAccount exists.
	if err := c.waitFor(ctx, "default ServiceAccount", func(ctx context.Context) error {
		_, err := client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return err
	}
	if len(nodes) == 0 {
		return nil
	}
	return c.waitFor(ctx, fmt.Sprintf("%d nodes", len(nodes)), func(ctx context.Context) error {
		for _, n := range nodes {
			node, err := client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if err := schedulable(node); err != nil {
				return fmt.Errorf("node %s: %w", n.Name, err)
			}
		}
		return nil
	})
}

const schedulerConfigTemplate = `apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: %q
  # The defaults (50 QPS) would pace scheduling hundreds of pods.
  qps: 500
  burst: 1000
leaderElection:
  leaderElect: false
`

// fakeNode is the Node object of n, the i-th node: kwok manages it, and it
// has room and pod IPs for thousands of pods.
func fakeNode(n Node, i int) *corev1.Node {
	labels := map[string]string{
		corev1.LabelHostname:   n.Name,
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: "amd64",
	}
	maps.Copy(labels, n.Labels)
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("1k"),
		corev1.ResourceMemory: resource.MustParse("4Ti"),
		corev1.ResourcePods:   resource.MustParse("4k"),
	}
	// kwok hands out pod IPs from the node's pod CIDR; a /20 each keeps
	// 2048 nodes apart in 10.128.0.0/9.
	podCIDR := fmt.Sprintf("10.%d.%d.0/20", 128+i/16, i%16*16)
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        n.Name,
			Labels:      labels,
			Annotations: map[string]string{kwokNodeAnnotation: "fake"},
		},
		Spec:   corev1.NodeSpec{PodCIDR: podCIDR, PodCIDRs: []string{podCIDR}},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
}

// schedulable fails unless the node is Ready and rid of the taints that the
// apiserver and the node lifecycle controller put on a node not yet Ready.
func schedulable(node *corev1.Node) error {
	ready := false
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			ready = cond.Status == corev1.ConditionTrue
		}
	}
	if !ready {
		return errors.New("not Ready")
	}
	for _, taint := range node.Spec.Taints {
		if taint.Key == corev1.TaintNodeNotReady || taint.Key == corev1.TaintNodeUnreachable {
			return fmt.Errorf("tainted %s", taint.Key)
		}
	}
	return nil
}

// writeKubeconfig writes Dir/kubeconfig for the admin user and sets the REST config from it.
func (c *Cluster) writeKubeconfig() error {
	const name = "mastodon-operator-local"
	config := clientcmdapi.NewConfig()
	config.Clusters[name] = &clientcmdapi.Cluster{Server: c.server, CertificateAuthority: c.pki(caCertFile)}
	config.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificate: c.pki(adminCertFile), ClientKey: c.pki(adminKeyFile)}
	config.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	config.CurrentContext = name
	// Embedded, so that a copy of the kubeconfig works anywhere.
	if err := clientcmdapi.FlattenConfig(config); err != nil {
		return err
	}
	c.kubeconfigPath = filepath.Join(c.dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*config, c.kubeconfigPath); err != nil {
		return err
	}
	if err := c.saveState(); err != nil {
		return err
	}
	return c.loadKubeconfig()
}

func (c *Cluster) loadKubeconfig() error {
	config, err := clientcmd.BuildConfigFromFlags("", c.kubeconfigPath)
	if err != nil {
		return err
	}
	c.config = config
	return nil
}

// logf reports progress to Options.Logf, if set.
func (c *Cluster) logf(format string, args ...any) {
	if c.progress != nil {
		c.progress(format, args...)
	}
}

// waitFor polls ready until it returns nil, failing early if a process exits.
func (c *Cluster) waitFor(ctx context.Context, what string, ready func(context.Context) error) error {
	start := time.Now()
	var last error
	err := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		if p := c.exited(); p != nil {
			how := "exited"
			if p.waitErr != nil {
				how = p.waitErr.Error()
			}
			return false, fmt.Errorf("%s %s; end of %s:\n%s", p.Name, how, p.Log, tail(p.Log, 30))
		}
		last = ready(ctx)
		return last == nil, nil
	})
	if err != nil {
		if last != nil {
			err = fmt.Errorf("%w (last: %v)", err, last)
		}
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	c.logf("%s ready after %s", what, time.Since(start).Round(time.Millisecond))
	return nil
}

// pki returns the path of a file under Dir/pki.
func (c *Cluster) pki(file string) string { return filepath.Join(c.dir, pkiDir, file) }

func loopbackURL(scheme string, port int) string {
	return scheme + "://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

func getOK(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// freePorts returns n distinct loopback ports that were free just now.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close() // held until all are picked, so that none repeats
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// RESTConfig returns a copy of the admin's client config.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.config) }

// KubeconfigPath returns the admin's kubeconfig file, Dir/kubeconfig.
func (c *Cluster) KubeconfigPath() string { return c.kubeconfigPath }

// Dir returns the cluster's state dir.
func (c *Cluster) Dir() string { return c.dir }

// Server returns the apiserver's URL.
func (c *Cluster) Server() string { return c.server }

// PIDs returns the pid of each control-plane process by name (etcd, kube-apiserver, ...), so
// that a benchmark can read what they cost.
func (c *Cluster) PIDs() map[string]int {
	pids := map[string]int{}
	for _, p := range c.procs {
		pids[p.Name] = p.PID
	}
	return pids
}

// RestartAPIServer stops the apiserver (SIGTERM, as a control-plane upgrade does) and starts it
// again with the same flags, port and certificates, and returns once it is ready. Clients keep
// their configuration; their requests fail while it is down.
func (c *Cluster) RestartAPIServer(ctx context.Context) error {
	i := slices.IndexFunc(c.procs, func(p *process) bool { return p.Name == "kube-apiserver" && p.args != nil })
	if i < 0 {
		return errors.New("no kube-apiserver that this program started")
	}
	old := c.procs[i]
	if err := terminate([]*process{old}); err != nil {
		return err
	}
	c.procs = slices.Delete(c.procs, i, i+1)
	if err := c.run(old.Name, old.Path, old.args...); err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(c.config)
	if err != nil {
		return err
	}
	return c.waitAPIServer(ctx, client)
}
