// Package helm is the operator's thin layer over the Helm SDK: it resolves a chart from a
// classic repository or an OCI registry and renders it through Helm's own install action.
package helm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/registry"
	"helm.sh/helm/v3/pkg/repo"
)

// ChartRef names a chart in a repository.
type ChartRef struct {
	// Repository is a classic repository URL (http:// or https://, holding index.yaml) or an
	// OCI location without the chart name (oci://host/path).
	Repository string
	// Name is the chart name, e.g. mastodon.
	Name string
	// Version is an exact version or a semver constraint (">=0.2.3"); empty means the latest.
	Version string
}

func (r ChartRef) String() string {
	version := r.Version
	if version == "" {
		version = "(latest)"
	}
	return fmt.Sprintf("chart %s version %s in repository %s", r.Name, version, r.Repository)
}

// Option tunes LoadChart.
type Option func(*options)

type options struct {
	cacheDir  string
	plainHTTP bool
}

// WithCacheDir keeps downloaded archives in dir; a cached archive whose digest matches the
// repository index is used instead of downloading it again. OCI pulls are not cached.
func WithCacheDir(dir string) Option {
	return func(o *options) { o.cacheDir = dir }
}

// WithPlainHTTP talks to OCI registries over HTTP instead of HTTPS, as registries on loopback
// in tests and the demo do.
func WithPlainHTTP() Option {
	return func(o *options) { o.plainHTTP = true }
}

// defaultLoadTimeout bounds the requests of a load whose context has no deadline.
const defaultLoadTimeout = 5 * time.Minute

// LoadChart resolves ref, downloads the chart and loads it. Helm's clients take no context, so
// ctx's deadline (or defaultLoadTimeout) bounds each request and cancellation is seen between
// requests.
func LoadChart(ctx context.Context, ref ChartRef, opts ...Option) (*chart.Chart, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if ref.Name == "" {
		return nil, fmt.Errorf("%s: no chart name", ref)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultLoadTimeout)
		defer cancel()
	}
	switch {
	case registry.IsOCI(ref.Repository):
		return loadFromRegistry(ctx, ref, o)
	case strings.HasPrefix(ref.Repository, "http://"), strings.HasPrefix(ref.Repository, "https://"):
		return loadFromRepository(ctx, ref, o)
	default:
		return nil, fmt.Errorf("%s: repository URL must start with http://, https:// or oci://", ref)
	}
}

// timeout is what is left of ctx, for clients that take a timeout instead of a context.
func timeout(ctx context.Context, ref ChartRef) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("%s: %w", ref, err)
	}
	deadline, _ := ctx.Deadline()
	left := time.Until(deadline)
	if left <= 0 {
		return 0, fmt.Errorf("%s: %w", ref, context.DeadlineExceeded)
	}
	return left, nil
}

func loadFromRepository(ctx context.Context, ref ChartRef, o options) (*chart.Chart, error) {
	left, err := timeout(ctx, ref)
	if err != nil {
		return nil, err
	}
	index, err := fetchIndex(ref.Repository, getter.Getters(getter.WithTimeout(left)))
	if err != nil {
		return nil, err
	}
	found, err := index.Get(ref.Name, ref.Version)
	if err != nil {
		return nil, notFound(ref, index)
	}
	if len(found.URLs) == 0 {
		return nil, fmt.Errorf("%s: the index gives no URL for version %s", ref, found.Version)
	}

	cached := ""
	if o.cacheDir != "" {
		cached = filepath.Join(o.cacheDir, fmt.Sprintf("%s-%s.tgz", found.Name, found.Version))
		if data, err := os.ReadFile(cached); err == nil && found.Digest != "" && digest(data) == found.Digest {
			return loadArchive(ref, data)
		}
	}

	url, err := repo.ResolveReferenceURL(ref.Repository, found.URLs[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	if left, err = timeout(ctx, ref); err != nil {
		return nil, err
	}
	g, err := getter.NewHTTPGetter(getter.WithTimeout(left))
	if err != nil {
		return nil, err
	}
	body, err := g.Get(url)
	if err != nil {
		return nil, fmt.Errorf("%s: download %s: %w", ref, url, err)
	}
	data := body.Bytes()
	if found.Digest != "" && digest(data) != found.Digest {
		return nil, fmt.Errorf("%s: %s has digest %s, the index says %s", ref, url, digest(data), found.Digest)
	}
	if cached != "" {
		if err := os.MkdirAll(o.cacheDir, 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(cached, data, 0o644); err != nil {
			return nil, err
		}
	}
	return loadArchive(ref, data)
}

// fetchIndex downloads index.yaml with Helm's own client, which wants a directory to put it in.
func fetchIndex(repoURL string, getters getter.Providers) (*repo.IndexFile, error) {
	dir, err := os.MkdirTemp("", "helm-index-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	chartRepo, err := repo.NewChartRepository(&repo.Entry{Name: "index", URL: repoURL}, getters)
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", repoURL, err)
	}
	chartRepo.CachePath = dir
	path, err := chartRepo.DownloadIndexFile()
	if err != nil {
		return nil, fmt.Errorf("repository %s: fetch index.yaml: %w", repoURL, err)
	}
	return repo.LoadIndexFile(path)
}

// notFound says what the repository offers instead, so that a wrong version or name is
// obvious from the error alone.
func notFound(ref ChartRef, index *repo.IndexFile) error {
	if versions, ok := index.Entries[ref.Name]; ok {
		available := make([]string, 0, len(versions))
		for _, v := range versions {
			available = append(available, v.Version)
		}
		return versionNotFound(ref, available)
	}
	names := slices.Sorted(maps.Keys(index.Entries))
	return fmt.Errorf("chart %s not found in repository %s: it holds %s", ref.Name, ref.Repository, listOrNone(names))
}

func versionNotFound(ref ChartRef, available []string) error {
	return fmt.Errorf("chart %s version %s not found in repository %s: available %s",
		ref.Name, ref.Version, ref.Repository, listOrNone(available))
}

func listOrNone(items []string) string {
	if len(items) == 0 {
		return "none"
	}
	return strings.Join(items, ", ")
}

func loadFromRegistry(ctx context.Context, ref ChartRef, o options) (*chart.Chart, error) {
	left, err := timeout(ctx, ref)
	if err != nil {
		return nil, err
	}
	clientOpts := []registry.ClientOption{
		registry.ClientOptHTTPClient(&http.Client{Timeout: left}),
		registry.ClientOptWriter(io.Discard),
	}
	if o.plainHTTP {
		clientOpts = append(clientOpts, registry.ClientOptPlainHTTP())
	}
	client, err := registry.NewClient(clientOpts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}

	location := strings.TrimSuffix(strings.TrimPrefix(ref.Repository, registry.OCIScheme+"://"), "/") + "/" + ref.Name
	tags, err := client.Tags(location)
	if err != nil {
		return nil, fmt.Errorf("%s: list tags of %s: %w", ref, location, err)
	}
	tag, err := registry.GetTagMatchingVersionOrConstraint(tags, ref.Version)
	if err != nil {
		return nil, versionNotFound(ref, tags)
	}
	pulled, err := client.Pull(location+":"+tag, registry.PullOptWithChart(true))
	if err != nil {
		return nil, fmt.Errorf("%s: pull %s:%s: %w", ref, location, tag, err)
	}
	return loadArchive(ref, pulled.Chart.Data)
}

func loadArchive(ref ChartRef, data []byte) (*chart.Chart, error) {
	chrt, err := loader.LoadArchive(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: load archive: %w", ref, err)
	}
	if chrt.Name() != ref.Name {
		return nil, fmt.Errorf("%s: the archive holds chart %s", ref, chrt.Name())
	}
	return chrt, nil
}

// digest is the form of a chart digest in index.yaml.
func digest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
