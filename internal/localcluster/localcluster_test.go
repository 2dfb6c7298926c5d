package localcluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

const poolLabel = "cloud.google.com/gke-nodepool"

// start starts a cluster in a fresh dir, failing the test (rather than
// skipping it, which would hide a CI without binaries) if there are none.
func start(t *testing.T, opts Options) *Cluster {
	t.Helper()
	if os.Getenv(BinDirEnv) == "" {
		t.Fatalf("%s is unset: run `export %s=$(hack/tools/build.sh)` first", BinDirEnv, BinDirEnv)
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	opts.Logf = t.Logf
	began := time.Now()
	c, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster up in %s", time.Since(began).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range c.procs {
				t.Logf("end of %s:\n%s", p.Log, tail(p.Log, 20))
			}
		}
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// eventually polls cond for up to a minute, failing the test with its last error.
func eventually(t *testing.T, what string, cond func(ctx context.Context) error) {
	t.Helper()
	began := time.Now()
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		last = cond(ctx)
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("%s: %v (last: %v)", what, err, last)
	}
	t.Logf("%s after %s", what, time.Since(began).Round(time.Millisecond))
}

func TestWorkloadsRunOnLabelledNodes(t *testing.T) {
	c := start(t, Options{Nodes: []Node{
		{Name: "pool-a-0", Labels: map[string]string{poolLabel: "pool-a"}},
		{Name: "pool-a-1", Labels: map[string]string{poolLabel: "pool-a"}},
		{Name: "pool-b-0", Labels: map[string]string{poolLabel: "pool-b"}},
	}})
	client := kubernetes.NewForConfigOrDie(c.RESTConfig())
	ctx := t.Context()
	ns := metav1.NamespaceDefault

	labels := map[string]string{"app": "web"}
	deployment := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{poolLabel: "pool-a"},
					Containers:   []corev1.Container{{Name: "web", Image: "registry.k8s.io/pause:3.10"}},
				},
			},
		},
	}
	if _, err := client.AppsV1().Deployments(ns).Create(ctx, deployment, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deployment available", func(ctx context.Context) error {
		d, err := client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.AvailableReplicas != 3 {
			return errors.New("not all replicas available")
		}
		for _, cond := range d.Status.Conditions {
			if cond.Type == appsv1.DeploymentAvailable && cond.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return errors.New("no Available condition")
	})
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 3 {
		t.Fatalf("want 3 pods, got %d", len(pods.Items))
	}
	for _, pod := range pods.Items {
		if pod.Spec.NodeName != "pool-a-0" && pod.Spec.NodeName != "pool-a-1" {
			t.Errorf("pod %s on node %q, want a pool-a node", pod.Name, pod.Spec.NodeName)
		}
		if pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP == "" {
			t.Errorf("pod %s: phase %s, IP %q; want Running with an IP", pod.Name, pod.Status.Phase, pod.Status.PodIP)
		}
	}

	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "migrate"},
		Spec: batchv1.JobSpec{
			Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers:    []corev1.Container{{Name: "migrate", Image: "registry.k8s.io/pause:3.10"}},
				},
			},
		},
	}
	if _, err := client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "job complete", func(ctx context.Context) error {
		j, err := client.BatchV1().Jobs(ns).Get(ctx, "migrate", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range j.Status.Conditions {
			if cond.Type == batchv1.JobComplete && cond.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return errors.New("not complete")
	})

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	assertStopped(t, c)
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestDetachedClusterStopsAndResumes covers the CLI's life cycle: a detached
// cluster is found again from its dir, stopped from there, and resumes its
// data when started again.
func TestDetachedClusterStopsAndResumes(t *testing.T) {
	dir := t.TempDir()
	c := start(t, Options{Dir: dir, Detach: true})
	for _, p := range c.procs {
		if sid, _ := unix.Getsid(p.PID); sid != p.PID {
			t.Errorf("%s is in session %d, want its own", p.Name, sid)
		}
	}
	client := kubernetes.NewForConfigOrDie(c.RESTConfig())
	kept := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kept"}}
	if _, err := client.CoreV1().ConfigMaps(metav1.NamespaceDefault).Create(t.Context(), kept, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	attached, err := Attach(dir)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if attached.Server() != c.Server() || attached.KubeconfigPath() != filepath.Join(dir, "kubeconfig") {
		t.Errorf("Attach found server %s, kubeconfig %s", attached.Server(), attached.KubeconfigPath())
	}
	if _, err := Start(t.Context(), Options{Dir: dir}); err == nil {
		t.Error("a second Start in a running dir succeeded")
	}

	if err := StopDir(dir); err != nil {
		t.Fatalf("StopDir: %v", err)
	}
	assertStopped(t, c)
	if _, err := Attach(dir); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Attach after StopDir: %v, want ErrNotRunning", err)
	}
	if err := StopDir(dir); err != nil {
		t.Errorf("second StopDir: %v", err)
	}

	resumed := start(t, Options{Dir: dir})
	client = kubernetes.NewForConfigOrDie(resumed.RESTConfig())
	if _, err := client.CoreV1().ConfigMaps(metav1.NamespaceDefault).Get(t.Context(), "kept", metav1.GetOptions{}); err != nil {
		t.Errorf("resumed cluster lost its data: %v", err)
	}
}

// assertStopped checks that no process of c, nor any it started, is left.
func assertStopped(t *testing.T, c *Cluster) {
	t.Helper()
	eventually(t, "processes reaped", func(context.Context) error {
		for _, p := range c.procs {
			if err := syscall.Kill(-p.PID, 0); !errors.Is(err, syscall.ESRCH) {
				return errors.New(p.Name + " still running")
			}
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(c.Dir(), stateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file left after Stop: %v", err)
	}
}
