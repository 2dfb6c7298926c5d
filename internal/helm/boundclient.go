package helm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/kube"
	"helm.sh/helm/v3/pkg/postrender"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// fullKubeClient is everything Helm's actions use of *kube.Client: the interface and the
// optional extensions they look for with type assertions.
type fullKubeClient interface {
	kube.Interface
	kube.InterfaceExt
	kube.InterfaceThreeWayMerge
	kube.InterfaceLogs
	kube.InterfaceDeletionPropagation
	kube.InterfaceResources
}

// boundClient ties Helm's kube client to one action: a context and a deadline.
//
// Helm v3's kube client takes no context: its waits run on context.Background() for the
// timeout they are given, and Install.RunWithContext, on cancellation, returns while "the
// install proceeds in the background". helm-controller runs a Helm fork whose kube client has
// a WaitContext for this. Here every call first checks the context, and waits return as soon
// as it ends, so an action abandoned by its caller (SIGTERM, lost leadership) makes no more
// changes to the cluster after its next call; a wait it leaves behind only reads, until its
// own timeout.
//
// The deadline makes the action's timeout bound the whole action, as the caller expects,
// instead of each of its waits (pre-install hooks, resources, post-install hooks) as Helm's
// Timeout does: each wait gets what is left. A timeout then fails through Helm's own code path,
// which records the failed release with Helm's message. Waits for deletions get a short grace
// past the deadline (see WaitForDelete).
type boundClient struct {
	fullKubeClient
	ctx      context.Context
	deadline time.Time
	timeout  time.Duration
	// hooks, when set, post-renders every manifest Build reads: the hooks, which Helm v3 does
	// not post-render itself, and the release's resources, already post-rendered, which an
	// idempotent post-renderer leaves as they are.
	hooks postrender.PostRenderer
}

// bind returns a copy of cfg whose kube client is bound to ctx and to a deadline timeout from
// now. A kube client other than Helm's own (a fake in unit tests) is left as is.
func bind(ctx context.Context, cfg *action.Configuration, timeout time.Duration) *action.Configuration {
	bound := *cfg
	if kc, ok := cfg.KubeClient.(fullKubeClient); ok {
		bound.KubeClient = &boundClient{fullKubeClient: kc, ctx: ctx, deadline: time.Now().Add(timeout), timeout: timeout}
	}
	return &bound
}

// wait runs a wait of Helm's with what is left of the deadline and returns when it does or
// when the context ends.
func (c *boundClient) wait(timeout time.Duration, wait func(time.Duration) error) error {
	return c.waitAtLeast(timeout, 0, wait)
}

// cleanupGrace is the least time a wait for deletions gets.
const cleanupGrace = 10 * time.Second

func (c *boundClient) waitAtLeast(timeout, least time.Duration, wait func(time.Duration) error) error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	left := min(timeout, max(least, time.Until(c.deadline)))
	if left <= 0 {
		// Helm reads a zero timeout as none at all.
		return fmt.Errorf("timed out: the timeout of %s for the whole action is used up", c.timeout)
	}
	done := make(chan error, 1)
	go func() { done <- wait(left) }()
	select {
	case err := <-done:
		return err
	case <-c.ctx.Done():
		return c.ctx.Err()
	}
}

func (c *boundClient) Wait(resources kube.ResourceList, timeout time.Duration) error {
	return c.wait(timeout, func(t time.Duration) error { return c.fullKubeClient.Wait(resources, t) })
}

func (c *boundClient) WaitWithJobs(resources kube.ResourceList, timeout time.Duration) error {
	return c.wait(timeout, func(t time.Duration) error { return c.fullKubeClient.WaitWithJobs(resources, t) })
}

func (c *boundClient) WatchUntilReady(resources kube.ResourceList, timeout time.Duration) error {
	return c.wait(timeout, func(t time.Duration) error { return c.fullKubeClient.WatchUntilReady(resources, t) })
}

// WaitForDelete gets at least cleanupGrace, even past the deadline: Helm waits for deletions
// when it cleans up after a failure (the hooks that succeeded before the one that failed), and
// an error there would replace the failure's own in what Helm reports and records.
func (c *boundClient) WaitForDelete(resources kube.ResourceList, timeout time.Duration) error {
	return c.waitAtLeast(timeout, min(timeout, cleanupGrace), func(t time.Duration) error {
		return c.fullKubeClient.WaitForDelete(resources, t)
	})
}

func (c *boundClient) WaitAndGetCompletedPodPhase(name string, timeout time.Duration) (corev1.PodPhase, error) {
	var phase corev1.PodPhase
	err := c.wait(timeout, func(t time.Duration) error {
		p, err := c.fullKubeClient.WaitAndGetCompletedPodPhase(name, t)
		phase = p
		return err
	})
	if err != nil {
		return corev1.PodUnknown, err
	}
	return phase, nil
}

// The calls below are single requests (or a few); they only check the context first.

func (c *boundClient) Create(resources kube.ResourceList) (*kube.Result, error) {
	if err := c.ctx.Err(); err != nil {
		return nil, err
	}
	return c.fullKubeClient.Create(resources)
}

func (c *boundClient) Update(original, target kube.ResourceList, force bool) (*kube.Result, error) {
	if err := c.ctx.Err(); err != nil {
		return nil, err
	}
	return c.fullKubeClient.Update(original, target, force)
}

func (c *boundClient) UpdateThreeWayMerge(original, target kube.ResourceList, force bool) (*kube.Result, error) {
	if err := c.ctx.Err(); err != nil {
		return nil, err
	}
	return c.fullKubeClient.UpdateThreeWayMerge(original, target, force)
}

func (c *boundClient) Delete(resources kube.ResourceList) (*kube.Result, []error) {
	if err := c.ctx.Err(); err != nil {
		return nil, []error{err}
	}
	return c.fullKubeClient.Delete(resources)
}

func (c *boundClient) DeleteWithPropagationPolicy(resources kube.ResourceList, policy metav1.DeletionPropagation) (*kube.Result, []error) {
	if err := c.ctx.Err(); err != nil {
		return nil, []error{err}
	}
	return c.fullKubeClient.DeleteWithPropagationPolicy(resources, policy)
}

// Build reads a manifest into resources, first through hooks, without the client-side check
// against the OpenAPI schema: Helm asks for it on every hook whatever the action says, and it
// fetched and parsed the schema of each API group on every install (a quarter of the operator's
// CPU with 100 installs at once, make bench), while the API server validates every object it is
// sent, and preflight's dry-run (dryRun=All) has had it validate each one before the install.
func (c *boundClient) Build(reader io.Reader, _ bool) (kube.ResourceList, error) {
	if err := c.ctx.Err(); err != nil {
		return nil, err
	}
	if c.hooks != nil {
		in := &bytes.Buffer{}
		if _, err := in.ReadFrom(reader); err != nil {
			return nil, err
		}
		out, err := c.hooks.Run(in)
		if err != nil {
			return nil, err
		}
		reader = out
	}
	return c.fullKubeClient.Build(reader, false)
}

func (c *boundClient) BuildTable(reader io.Reader, _ bool) (kube.ResourceList, error) {
	if err := c.ctx.Err(); err != nil {
		return nil, err
	}
	return c.fullKubeClient.BuildTable(reader, false)
}

func (c *boundClient) IsReachable() error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	return c.fullKubeClient.IsReachable()
}

func (c *boundClient) Get(resources kube.ResourceList, related bool) (map[string][]runtime.Object, error) {
	if err := c.ctx.Err(); err != nil {
		return nil, err
	}
	return c.fullKubeClient.Get(resources, related)
}

func (c *boundClient) GetPodList(namespace string, opts metav1.ListOptions) (*corev1.PodList, error) {
	if err := c.ctx.Err(); err != nil {
		return nil, err
	}
	return c.fullKubeClient.GetPodList(namespace, opts)
}

func (c *boundClient) OutputContainerLogsForPodList(pods *corev1.PodList, namespace string, writer func(namespace, pod, container string) io.Writer) error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	return c.fullKubeClient.OutputContainerLogsForPodList(pods, namespace, writer)
}
