package helm

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory" // the test registry's storage
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/registry"

	"github.com/mastodon-operator/mastodon-operator/internal/chartrepo"
)

const testChart = "../../test/testdata/charts/mastodon-1.0.2.tgz"

func TestLoadChartFromRepository(t *testing.T) {
	repoURL := serveRepository(t)
	for name, version := range map[string]string{"exact": "1.0.2", "constraint": ">=0.2.3", "latest": ""} {
		t.Run(name, func(t *testing.T) {
			chrt, err := LoadChart(t.Context(), ChartRef{Repository: repoURL, Name: "mastodon", Version: version})
			if err != nil {
				t.Fatal(err)
			}
			if chrt.Name() != "mastodon" || chrt.Metadata.Version != "1.0.2" || chrt.AppVersion() != "v4.6.2" {
				t.Fatalf("loaded %s %s (app %s), want mastodon 1.0.2 (app v4.6.2)", chrt.Name(), chrt.Metadata.Version, chrt.AppVersion())
			}
		})
	}
}

func TestLoadChartSaysWhatTheRepositoryHolds(t *testing.T) {
	repoURL := serveRepository(t)
	for _, tc := range []struct {
		ref  ChartRef
		want string
	}{
		{ChartRef{Repository: repoURL, Name: "mastodon", Version: "9.9.9"},
			"chart mastodon version 9.9.9 not found in repository " + repoURL + ": available 1.0.2"},
		{ChartRef{Repository: repoURL, Name: "mastodon", Version: "<1.0.0"},
			"chart mastodon version <1.0.0 not found in repository " + repoURL + ": available 1.0.2"},
		{ChartRef{Repository: repoURL, Name: "mastodont", Version: "1.0.2"},
			"chart mastodont not found in repository " + repoURL + ": it holds mastodon"},
	} {
		_, err := LoadChart(t.Context(), tc.ref)
		if err == nil || err.Error() != tc.want {
			t.Errorf("LoadChart(%+v) = %v, want error %q", tc.ref, err, tc.want)
		}
	}
}

func TestLoadChartFailsOnAnUnreachableRepository(t *testing.T) {
	repoURL := serveRepository(t)
	_, err := LoadChart(t.Context(), ChartRef{Repository: repoURL + "/nothing-here", Name: "mastodon"})
	if err == nil || !strings.Contains(err.Error(), "fetch index.yaml") {
		t.Fatalf("LoadChart from a path without index.yaml = %v, want an error about index.yaml", err)
	}
}

func TestLoadChartReusesTheCachedArchive(t *testing.T) {
	// A proxy in front of the repository counts the archive downloads.
	upstream, err := url.Parse(serveRepository(t))
	if err != nil {
		t.Fatal(err)
	}
	var downloads atomic.Int32
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".tgz") {
			downloads.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(counting.Close)

	cache := t.TempDir()
	ref := ChartRef{Repository: counting.URL, Name: "mastodon", Version: "1.0.2"}
	load := func() {
		t.Helper()
		if _, err := LoadChart(t.Context(), ref, WithCacheDir(cache)); err != nil {
			t.Fatal(err)
		}
	}
	archive := filepath.Join(cache, "mastodon-1.0.2.tgz")

	load()
	if _, err := os.Stat(archive); err != nil {
		t.Fatalf("archive not cached: %v", err)
	}
	load()
	if n := downloads.Load(); n != 1 {
		t.Fatalf("two loads downloaded the archive %d times, want once", n)
	}

	// A damaged archive no longer matches the index digest: it is downloaded again.
	if err := os.WriteFile(archive, []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	load()
	if n := downloads.Load(); n != 2 {
		t.Fatalf("load after damage made %d downloads in all, want 2", n)
	}
}

func TestLoadChartFromRegistry(t *testing.T) {
	host := serveRegistry(t)
	pushChart(t, host+"/charts/mastodon:1.0.2")
	repository := "oci://" + host + "/charts"

	for _, version := range []string{"1.0.2", ">=0.2.3"} {
		chrt, err := LoadChart(t.Context(), ChartRef{Repository: repository, Name: "mastodon", Version: version}, WithPlainHTTP())
		if err != nil {
			t.Fatalf("version %q: %v", version, err)
		}
		if chrt.Name() != "mastodon" || chrt.Metadata.Version != "1.0.2" {
			t.Fatalf("version %q: loaded %s %s, want mastodon 1.0.2", version, chrt.Name(), chrt.Metadata.Version)
		}
	}

	_, err := LoadChart(t.Context(), ChartRef{Repository: repository, Name: "mastodon", Version: "9.9.9"}, WithPlainHTTP())
	want := "chart mastodon version 9.9.9 not found in repository " + repository + ": available 1.0.2"
	if err == nil || err.Error() != want {
		t.Fatalf("LoadChart of a missing version = %v, want error %q", err, want)
	}
}

func TestLoadChartStopsWithTheContext(t *testing.T) {
	repoURL := serveRepository(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := LoadChart(ctx, ChartRef{Repository: repoURL, Name: "mastodon"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("LoadChart with a cancelled context = %v, want context.Canceled", err)
	}
}

func serveRepository(t *testing.T) string {
	t.Helper()
	srv, err := chartrepo.Serve(testChart)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv.URL()
}

// serveRegistry runs an OCI registry (the CNCF distribution one) in process, over plain HTTP
// on loopback, and returns its host:port.
func serveRegistry(t *testing.T) string {
	t.Helper()
	config := &configuration.Configuration{
		Storage: configuration.Storage{
			"inmemory":    configuration.Parameters{},
			"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}},
		},
	}
	srv := httptest.NewServer(handlers.NewApp(t.Context(), config))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// pushChart packages the official chart and pushes it as `helm push` would.
func pushChart(t *testing.T, ref string) {
	t.Helper()
	chrt, err := loader.Load(testChart)
	if err != nil {
		t.Fatal(err)
	}
	archive, err := chartutil.Save(chrt, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	client, err := registry.NewClient(registry.ClientOptPlainHTTP())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Push(data, ref); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}
