package chartrepo

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/repo"
	"sigs.k8s.io/yaml"
)

const testChart = "../../test/testdata/charts/mastodon-1.0.2.tgz"

func TestServeListsAndServesTheChart(t *testing.T) {
	srv, err := Serve(testChart)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	var index repo.IndexFile
	if err := yaml.Unmarshal(get(t, srv.URL()+"/index.yaml"), &index); err != nil {
		t.Fatalf("index.yaml: %v", err)
	}
	versions := index.Entries["mastodon"]
	if len(versions) != 1 || versions[0].Version != "1.0.2" || versions[0].AppVersion != "v4.6.2" {
		t.Fatalf("index lists mastodon %+v, want exactly version 1.0.2 (appVersion v4.6.2)", versions)
	}
	if len(versions[0].URLs) != 1 || versions[0].Digest == "" {
		t.Fatalf("mastodon 1.0.2 has URLs %v and digest %q, want one URL and a digest", versions[0].URLs, versions[0].Digest)
	}

	chrt, err := loader.LoadArchive(bytes.NewReader(get(t, srv.URL()+"/"+versions[0].URLs[0])))
	if err != nil {
		t.Fatalf("archive at %s: %v", versions[0].URLs[0], err)
	}
	if chrt.Name() != "mastodon" || chrt.Metadata.Version != "1.0.2" {
		t.Fatalf("archive holds %s %s, want mastodon 1.0.2", chrt.Name(), chrt.Metadata.Version)
	}
}

func TestCloseStopsServing(t *testing.T) {
	srv, err := Serve(testChart)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if resp, err := http.Get(srv.URL() + "/index.yaml"); err == nil {
		resp.Body.Close()
		t.Fatalf("GET index.yaml after Close answered %s", resp.Status)
	}
}

func TestServeRejectsWhatIsNotAChart(t *testing.T) {
	if srv, err := Serve(t.TempDir()); err == nil {
		srv.Close()
		t.Fatal("Serve of an empty directory succeeded, want an error")
	}
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return body
}
