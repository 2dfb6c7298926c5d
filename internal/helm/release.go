package helm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/kube"
	"helm.sh/helm/v3/pkg/postrender"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/releaseutil"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/resource"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// The release actions below are the operator's only way to change a Helm release. They follow
// helm-controller (fluxcd/helm-controller, internal/action and internal/reconcile):
//
//   - releases are stored by the Secrets driver in the release's namespace, as `helm` does,
//     so `helm list`/`helm history` show what the operator did;
//   - an action never runs `--atomic`: a failed install stays in the cluster, recorded as
//     failed with Helm's own error, and the caller decides (helm-controller's remediation is a
//     separate, explicit step too);
//   - a release left locked in a pending state by a process that died mid-action is unlocked
//     by marking that revision failed ("Release unlocked from stale '<state>' state", as
//     helm-controller's Unlock does), then remediated as helm-controller remediates a failed
//     release: an install that never served is uninstalled (its install remediation), an upgrade
//     or rollback is rolled back to the last revision that served (its upgrade remediation).
//
// They assume that the operator (one leader) is the only writer of its releases: a pending
// release is taken for a dead operator's, never for a live `helm` run by someone else.

// maxHistory is how many revisions of a release the storage keeps.
const maxHistory = 10

var (
	// ErrFailed says that the install (or the rollback of a recovery) failed: Helm ran it and
	// recorded why in the failed revision (a hook Job that failed, a timeout), or refused a
	// chart that does not render with these values (nothing stored then). Install does not
	// retry a failed release by itself; Uninstall it to install again.
	ErrFailed = errors.New("helm release failed")
	// ErrOtherChart says that the release is deployed with another chart or chart version;
	// Install does not upgrade.
	ErrOtherChart = errors.New("helm release deployed with another chart version")
)

// NewConfig returns an action.Configuration for releases in namespace with clients of their own
// (NewClients, then Clients.Config); a process that makes many shares its Clients.
func NewConfig(cfg *rest.Config, namespace string, log func(format string, v ...any)) (*action.Configuration, error) {
	clients, err := NewClients(cfg)
	if err != nil {
		return nil, fmt.Errorf("helm: %w", err)
	}
	return clients.Config(namespace, log)
}

// Config returns an action.Configuration for releases in namespace, stored by the Secrets
// driver in that namespace. log receives Helm's debug messages; nil discards them.
func (c *Clients) Config(namespace string, log func(format string, v ...any)) (*action.Configuration, error) {
	if namespace == "" {
		return nil, errors.New("helm: a release namespace is required")
	}
	if log == nil {
		log = func(string, ...any) {}
	}
	getter := &restClientGetter{Clients: c, namespace: namespace}
	kc := kube.New(getter)
	kc.Log = log
	kc.Namespace = namespace

	clientset, err := kubernetes.NewForConfig(getter.config)
	if err != nil {
		return nil, fmt.Errorf("helm: %w", err)
	}
	secrets := driver.NewSecrets(clientset.CoreV1().Secrets(namespace))
	secrets.Log = log
	store := storage.Init(secrets)
	store.Log = log
	store.MaxHistory = maxHistory

	return &action.Configuration{
		RESTClientGetter: getter,
		Releases:         store,
		KubeClient:       kc,
		Log:              log,
		HookOutputFunc:   func(_, _, _ string) io.Writer { return io.Discard },
	}, nil
}

// Status returns the last revision of the release, whatever its state, or (nil, nil) if the
// release does not exist.
func Status(cfg *action.Configuration, name string) (*release.Release, error) {
	rel, err := cfg.Releases.Last(name)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("helm release %s: read storage: %w", name, err)
	}
	return rel, nil
}

// Install installs chrt as release name in namespace and waits, up to timeout for the whole
// install, until its hooks have completed (pre-install and post-install Jobs) and its resources
// are ready (Deployments available, Jobs complete).
//
// It is idempotent:
//   - a release deployed with the same chart name and version is returned as is, without
//     comparing values (the caller compares rel.Config if it cares);
//   - a release interrupted mid-action is recovered first (see Recover), then installed if the
//     recovery removed it;
//   - a release deployed with another chart version fails with ErrOtherChart (no upgrade here);
//   - a failed release fails with ErrFailed and Helm's description of the failure.
//
// A failed install returns the failed release and an error that wraps ErrFailed and Helm's
// error (the hook Job that failed, the timeout); the release and its objects stay for the
// caller to look at and Uninstall.
//
// When ctx ends, Install returns at once (Helm's run stops at its next call to the cluster)
// with an error that wraps ctx.Err(); the release is left failed ("... context canceled") or,
// if the process dies first, pending-install, and the next Install recovers it. Use timeout, not a
// ctx deadline, to bound the install: a timeout is a failure of the release, the end of ctx an
// interruption of the operator. A recovery before the install has a timeout of its own, and
// the deletions Helm waits for when it cleans up after a failed hook get a short grace past the
// timeout, so that Helm reports the hook's failure rather than the cleanup's.
func Install(ctx context.Context, cfg *action.Configuration, chrt *chart.Chart, name, namespace string, values map[string]any, timeout time.Duration, opts ...InstallOption) (*release.Release, error) {
	if chrt == nil || chrt.Metadata == nil {
		return nil, fmt.Errorf("install helm release %s: no chart", name)
	}
	if _, err := Recover(ctx, cfg, name, timeout); err != nil {
		return nil, err
	}
	last, err := Status(cfg, name)
	if err != nil {
		return nil, err
	}
	replace := false
	if last != nil {
		switch last.Info.Status {
		case release.StatusDeployed:
			if last.Chart != nil && last.Chart.Metadata != nil &&
				last.Chart.Metadata.Name == chrt.Metadata.Name && last.Chart.Metadata.Version == chrt.Metadata.Version {
				cfg.Log("helm release %s revision %d is deployed with %s, nothing to install", name, last.Version, chartName(chrt))
				return last, nil
			}
			return last, fmt.Errorf("%w: release %s revision %d has %s, not %s", ErrOtherChart, name, last.Version, chartName(last.Chart), chartName(chrt))
		case release.StatusFailed:
			return last, fmt.Errorf("%w: release %s revision %d with %s: %s", ErrFailed, name, last.Version, chartName(last.Chart), last.Info.Description)
		case release.StatusUninstalled:
			// Uninstalled with its history kept: Helm installs over it when asked to replace.
			replace = true
		default:
			return last, fmt.Errorf("helm release %s revision %d is %s, which Install does not handle", name, last.Version, last.Info.Status)
		}
	}

	actx, done := actionContext(ctx)
	defer done()
	bound := bind(actx, cfg, timeout)
	install := action.NewInstall(bound)
	install.ReleaseName = name
	install.Namespace = namespace
	install.Wait = true
	install.WaitForJobs = true
	// As in the bound client's Build: the API server validates, and preflight's dry-run has.
	install.DisableOpenAPIValidation = true
	install.Timeout = timeout
	install.Replace = replace
	settings := apply(install, opts)
	if kc, ok := bound.KubeClient.(*boundClient); ok && settings.hooks != nil {
		kc.hooks = settings.hooks
	}
	// Not install.RunWithContext: on cancellation it returns, records the release failed and
	// lets the install go on in the background, in a goroutine that shares the release with the
	// one recording it (a data race that `go test -race` reports). The bound kube client
	// stops Helm's own run instead, which records the interruption itself.
	var rel *release.Release
	err = interruptible(ctx, func() (err error) {
		rel, err = install.Run(chrt, values)
		return err
	})
	switch {
	case err == nil:
		return rel, nil
	case ctx.Err() != nil:
		return nil, fmt.Errorf("install of helm release %s interrupted (the next Install recovers it): %w", name, ctx.Err())
	case rel != nil && rel.Info != nil && rel.Info.Status == release.StatusFailed:
		return rel, fmt.Errorf("%w: install of release %s with %s: %w", ErrFailed, name, chartName(chrt), err)
	default:
		// Refused before anything was stored: rendering, validation, unreachable cluster.
		return nil, fmt.Errorf("install helm release %s with %s: %w", name, chartName(chrt), err)
	}
}

// InstallOption changes how Install installs, and Render renders.
type InstallOption func(*installSettings)

type installSettings struct {
	install *action.Install
	// hooks post-renders the hook manifests, which Helm v3 leaves out of post-rendering
	// (helm/helm#7891): Install through the kube client's Build of each hook, Render itself.
	hooks postrender.PostRenderer
}

func apply(install *action.Install, opts []InstallOption) installSettings {
	s := installSettings{install: install}
	for _, o := range opts {
		o(&s)
	}
	return s
}

// WithPostRenderer has the install pass the rendered manifests (hooks excluded, as Helm v3
// does) through pr, as `helm install --post-renderer` does, after the post-renderers of
// earlier options; Helm stores and applies what they return.
func WithPostRenderer(pr postrender.PostRenderer) InstallOption {
	return func(s *installSettings) { s.install.PostRenderer = then(s.install.PostRenderer, pr) }
}

// WithSecretEnv gives the release's Mastodon containers and hook Jobs the variables vars from
// their Secret keys (SecretEnv), in the resources through a post-renderer and in the hooks
// as Install creates them. The release stores its hooks as the chart rendered them: `helm get
// hooks` does not show these variables.
func WithSecretEnv(vars []v1alpha1.SecretEnvVar) InstallOption {
	return func(s *installSettings) {
		if len(vars) == 0 {
			return
		}
		pr := SecretEnv(vars)
		s.install.PostRenderer = then(s.install.PostRenderer, pr)
		s.hooks = then(s.hooks, pr)
	}
}

// Uninstall removes the release and waits, up to timeout, until its objects are gone (with
// foreground deletion, so the pods of its Deployments and Jobs too), then removes the
// release's storage Secrets. It also removes the hook objects Helm leaves behind (a hook Job
// that failed or was interrupted has no hook-failed delete policy in the Mastodon chart and
// would otherwise outlive the release, still trying to reach the database), except those
// annotated helm.sh/resource-policy: keep. No release is success.
//
// When ctx ends, Uninstall returns at once; the release stays "uninstalling" and Recover (or
// the next Uninstall or Install) finishes the job.
func Uninstall(ctx context.Context, cfg *action.Configuration, name string, timeout time.Duration) error {
	history, err := cfg.Releases.History(name)
	if errors.Is(err, driver.ErrReleaseNotFound) || (err == nil && len(history) == 0) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("uninstall helm release %s: read storage: %w", name, err)
	}

	actx, done := actionContext(ctx)
	defer done()
	bound := bind(actx, cfg, timeout)
	uninstall := action.NewUninstall(bound)
	uninstall.Wait = true
	uninstall.Timeout = timeout
	uninstall.IgnoreNotFound = true
	uninstall.DeletionPropagation = string(metav1.DeletePropagationForeground)
	err = interruptible(ctx, func() error {
		_, err := uninstall.Run(name)
		return err
	})
	if err == nil {
		err = interruptible(ctx, func() error { return deleteHooks(bound, history, timeout) })
	}
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("uninstall of helm release %s interrupted: %w", name, ctx.Err())
	default:
		return fmt.Errorf("uninstall helm release %s: %w", name, err)
	}
}

// Recover unlocks a release that an action interrupted, as a killed operator leaves it, and
// brings it back to a state from which Install can go on. Helm never clears such a lock by
// itself: a pending-install makes a new install fail with "cannot re-use a name that is still
// in use", a pending-upgrade or pending-rollback makes an upgrade fail with "another operation
// (install/upgrade/rollback) is in progress".
//
// The last revision is interrupted when it is pending-install, pending-upgrade or
// pending-rollback, or failed because its action was canceled (what Install and Rollback record
// when their context ends before the process does). Then, as helm-controller does:
//   - a pending revision is marked failed, "Release unlocked from stale '<state>' state";
//   - if no revision of the release ever served (deployed or superseded), the release is
//     uninstalled: Install will install it afresh;
//   - otherwise it is rolled back to the last revision that served, waiting for its resources
//     and Jobs up to timeout.
//
// A release left "uninstalling" by an interrupted Uninstall is uninstalled.
//
// recovered reports whether there was anything to recover. A release that failed by itself
// (a hook Job failed, a timeout) is not touched: that failure is the caller's to handle.
func Recover(ctx context.Context, cfg *action.Configuration, name string, timeout time.Duration) (recovered bool, err error) {
	last, err := Status(cfg, name)
	if err != nil || last == nil {
		return false, err
	}
	state := last.Info.Status
	if state == release.StatusUninstalling {
		cfg.Log("helm release %s revision %d was left uninstalling: finishing the uninstall", name, last.Version)
		if err := Uninstall(ctx, cfg, name, timeout); err != nil {
			return false, fmt.Errorf("recover helm release %s: %w", name, err)
		}
		return true, nil
	}
	if !interrupted(last) {
		return false, nil
	}

	if state.IsPending() {
		cfg.Log("helm release %s revision %d is locked %s: unlocking it", name, last.Version, state)
		last.SetStatus(release.StatusFailed, fmt.Sprintf("%s '%s' state", unlockedDescription, state))
		if err := cfg.Releases.Update(last); err != nil {
			return false, fmt.Errorf("recover helm release %s: unlock revision %d from %s: %w", name, last.Version, state, err)
		}
	}

	history, err := cfg.Releases.History(name)
	if err != nil {
		return false, fmt.Errorf("recover helm release %s: read storage: %w", name, err)
	}
	target := lastServed(history, last.Version)
	if target == nil {
		cfg.Log("helm release %s never served (revision %d was interrupted in %s): uninstalling it", name, last.Version, state)
		if err := Uninstall(ctx, cfg, name, timeout); err != nil {
			return false, fmt.Errorf("recover helm release %s: %w", name, err)
		}
		return true, nil
	}

	cfg.Log("helm release %s revision %d was interrupted in %s: rolling back to revision %d", name, last.Version, state, target.Version)
	actx, done := actionContext(ctx)
	defer done()
	rollback := action.NewRollback(bind(actx, cfg, timeout))
	rollback.Version = target.Version
	rollback.Wait = true
	rollback.WaitForJobs = true
	rollback.Timeout = timeout
	// Rollback sets the shared storage's MaxHistory from its own.
	rollback.MaxHistory = cfg.Releases.MaxHistory
	err = interruptible(ctx, func() error { return rollback.Run(name) })
	switch {
	case err == nil:
		return true, nil
	case ctx.Err() != nil:
		return false, fmt.Errorf("recover helm release %s: rollback to revision %d interrupted: %w", name, target.Version, ctx.Err())
	default:
		return false, fmt.Errorf("%w: recover helm release %s: rollback to revision %d: %w", ErrFailed, name, target.Version, err)
	}
}

// unlockedDescription starts the description of a revision Recover unlocked; an interruption
// between the unlock and the uninstall or rollback that follows leaves the revision failed with
// it, and the next Recover goes on.
const unlockedDescription = "Release unlocked from stale"

// interrupted tells whether rel was left by an action that did not finish, rather than one
// that failed: pending, or failed with the cancellation of its context (Helm records failures
// as `... failed: <error>`; Helm's own timeouts never cancel), or unlocked by Recover.
func interrupted(rel *release.Release) bool {
	switch {
	case rel.Info.Status.IsPending():
		return true
	case rel.Info.Status != release.StatusFailed:
		return false
	}
	description := rel.Info.Description
	return strings.HasSuffix(description, ": "+context.Canceled.Error()) || strings.HasPrefix(description, unlockedDescription)
}

// lastServed is the newest revision before version that was deployed (or deployed, then
// superseded by a later one), or nil.
func lastServed(history []*release.Release, version int) *release.Release {
	var served *release.Release
	for _, rel := range history {
		status := rel.Info.Status
		if rel.Version < version && (status == release.StatusDeployed || status == release.StatusSuperseded) &&
			(served == nil || rel.Version > served.Version) {
			served = rel
		}
	}
	return served
}

// deleteHooks deletes, with foreground propagation, the hook objects of every revision in
// history that still exist, and waits for them to go.
func deleteHooks(cfg *action.Configuration, history []*release.Release, timeout time.Duration) error {
	releaseutil.SortByRevision(history)
	newest := map[string]*release.Hook{} // by kind/name: the newest revision's manifest
	for _, rel := range history {
		for _, hook := range rel.Hooks {
			if hook.Kind != "CustomResourceDefinition" { // as Helm: never cascade through a CRD
				newest[hook.Kind+"/"+hook.Name] = hook
			}
		}
	}
	if len(newest) == 0 {
		return nil
	}
	var resources kube.ResourceList
	for _, key := range slices.Sorted(maps.Keys(newest)) {
		built, err := cfg.KubeClient.Build(strings.NewReader(newest[key].Manifest), false)
		if meta.IsNoMatchError(err) {
			continue // its kind is gone from the cluster, and its objects with it
		}
		if err != nil {
			return fmt.Errorf("hook %s left behind: %w", key, err)
		}
		resources = append(resources, built...)
	}
	resources = resources.Filter(func(info *resource.Info) bool {
		accessor, err := meta.Accessor(info.Object)
		return err != nil || accessor.GetAnnotations()[kube.ResourcePolicyAnno] != kube.KeepPolicy
	})
	if len(resources) == 0 {
		return nil
	}
	kc, ok := cfg.KubeClient.(fullKubeClient)
	if !ok {
		_, errs := cfg.KubeClient.Delete(resources)
		return errors.Join(errs...)
	}
	if _, errs := kc.DeleteWithPropagationPolicy(resources, metav1.DeletePropagationForeground); len(errs) > 0 {
		return fmt.Errorf("delete hooks left behind: %w", errors.Join(errs...))
	}
	if err := kc.WaitForDelete(resources, timeout); err != nil {
		return fmt.Errorf("wait for the hooks left behind to go: %w", err)
	}
	return nil
}

// actionContext returns the context given to a Helm action: canceled when ctx ends, for
// whatever reason, so that Helm records an interruption as "context canceled" and never as a
// "context deadline exceeded" that reads like one of its own timeouts.
func actionContext(ctx context.Context) (context.Context, context.CancelFunc) {
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	return actx, func() {
		stop()
		cancel()
	}
}

// settleTimeout is how long an interrupted action gets to stop and record how it ended.
const settleTimeout = 5 * time.Second

// interruptible runs an action of Helm's, bound to ctx (see bind), and returns its error, or
// ctx's when ctx ends first. Bound to ctx, the action stops at its next call to the cluster
// (its waits at once) and records the interruption as Helm records a failure ("...: context
// canceled"); interruptible gives it up to settleTimeout to do so before returning, so that
// the release is left in a known state and no goroutine of Helm's runs on. What run sets may
// be read after interruptible returns, unless ctx has ended.
func interruptible(ctx context.Context, run func() error) error {
	done := make(chan error, 1)
	go func() { done <- run() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	select {
	case err := <-done:
		if err == nil {
			return nil // it had finished before it could see the cancellation
		}
	case <-time.After(settleTimeout):
	}
	return ctx.Err()
}

func chartName(chrt *chart.Chart) string {
	if chrt == nil || chrt.Metadata == nil {
		return "no chart"
	}
	return fmt.Sprintf("chart %s %s", chrt.Metadata.Name, chrt.Metadata.Version)
}
