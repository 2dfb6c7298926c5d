// Package chartrepo serves chart directories as a classic Helm repository (index.yaml and .tgz
// archives) on the loopback interface, so that tests and the demo install charts the way the
// operator does in production: from a repository URL, with no network beyond the host.
package chartrepo

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/repo"
)

// Server is a running chart repository. Close it when done.
type Server struct {
	dir      string
	url      string
	http     *http.Server
	served   chan error
	close    sync.Once
	closeErr error
}

// Serve packages each chart directory (or copies each chart archive), indexes the archives and serves them on 127.0.0.1 at a
// free port. Two directories may hold the same chart at different versions.
func Serve(charts ...string) (*Server, error) {
	if len(charts) == 0 {
		return nil, errors.New("chartrepo: no chart directory to serve")
	}
	dir, err := os.MkdirTemp("", "chartrepo-")
	if err != nil {
		return nil, err
	}
	if err := fill(dir, charts); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{
		dir:    dir,
		url:    "http://" + listener.Addr().String(),
		http:   &http.Server{Handler: http.FileServer(http.Dir(dir))},
		served: make(chan error, 1),
	}
	go func() { s.served <- s.http.Serve(listener) }()
	return s, nil
}

// URL is the repository URL, as given to `helm repo add` or `helm install --repo`.
func (s *Server) URL() string { return s.url }

// Close stops serving and removes the packaged charts. Later calls return the first result.
func (s *Server) Close() error {
	s.close.Do(func() {
		err := s.http.Close()
		if served := <-s.served; !errors.Is(served, http.ErrServerClosed) {
			err = errors.Join(err, served)
		}
		s.closeErr = errors.Join(err, os.RemoveAll(s.dir))
	})
	return s.closeErr
}

// fill packages the charts into dir and indexes them. The index gives chart URLs relative to
// the repository URL, so that the repository works under any address, a proxy's included.
func fill(dir string, charts []string) error {
	for _, chart := range charts {
		if err := pack(chart, dir); err != nil {
			return err
		}
	}
	index, err := repo.IndexDirectory(dir, "")
	if err != nil {
		return fmt.Errorf("chartrepo: index charts: %w", err)
	}
	index.SortEntries()
	return index.WriteFile(filepath.Join(dir, "index.yaml"), 0o644)
}

// pack writes a chart as <name>-<version>.tgz into dir, after Helm has loaded (and so
// validated) it. A chart directory is packaged; a chart archive is served byte for byte as it
// is, the way a chart repository serves what the chart's maintainers packaged.
func pack(chartPath, dir string) error {
	chrt, err := loader.Load(chartPath)
	if err != nil {
		return fmt.Errorf("chartrepo: load chart %s: %w", chartPath, err)
	}
	if info, err := os.Stat(chartPath); err == nil && !info.IsDir() {
		data, err := os.ReadFile(chartPath)
		if err != nil {
			return fmt.Errorf("chartrepo: read chart %s: %w", chartPath, err)
		}
		name := fmt.Sprintf("%s-%s.tgz", chrt.Name(), chrt.Metadata.Version)
		return os.WriteFile(filepath.Join(dir, name), data, 0o644)
	}
	if _, err := chartutil.Save(chrt, dir); err != nil {
		return fmt.Errorf("chartrepo: package chart %s: %w", chartPath, err)
	}
	return nil
}
