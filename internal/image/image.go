// Package image builds the operator's container image without a Docker engine, with
// go-containerregistry: a static manager binary on a base made from scratch (no shell, no package
// manager), run as the non-root user 65532, labelled with the OCI annotations.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NonRoot is the user and group the manager runs as: distroless's nonroot.
const NonRoot = 65532

// Entrypoint is where the manager binary lives in the image.
const Entrypoint = "/manager"

// Options say what goes into the image.
type Options struct {
	// Binary is the manager, built static (CGO_ENABLED=0) for linux.
	Binary string
	// CACertificates is the PEM bundle copied to /etc/ssl/certs/ca-certificates.crt, so that the
	// manager can reach chart repositories and Google's APIs over HTTPS.
	CACertificates string
	// Arch is the binary's GOARCH (amd64, arm64).
	Arch string
	// Version, Revision and Source fill the OCI labels.
	Version, Revision, Source string
	// Created is the time written into the image; a fixed time makes builds reproducible.
	Created time.Time
}

// Labels are the org.opencontainers.image.* labels of an image built with these options.
func (o Options) Labels() map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "mastodon-operator",
		"org.opencontainers.image.description": "Moves a Kustomize-managed Mastodon to the official Mastodon Helm chart, and rolls it back when the new stack misbehaves.",
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.revision":    o.Revision,
		"org.opencontainers.image.source":      o.Source,
		"org.opencontainers.image.created":     o.Created.UTC().Format(time.RFC3339),
	}
}

// Build makes the image: a base layer (passwd and group naming the nonroot user, /tmp, the CA
// certificates) and a layer with the manager, in OCI media types.
func Build(o Options) (v1.Image, error) {
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("reading the manager binary: %w", err)
	}
	certs, err := os.ReadFile(o.CACertificates)
	if err != nil {
		return nil, fmt.Errorf("reading the CA certificates: %w", err)
	}
	base, err := layer(o.Created, []file{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, data: []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonRoot, NonRoot))},
		{name: "etc/group", mode: 0o644, data: []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", NonRoot))},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: certs},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, dir: true, owner: NonRoot},
		// Helm's cache and config go under /tmp; the chart mounts an emptyDir there.
		{name: "tmp/", mode: 0o1777, dir: true},
	})
	if err != nil {
		return nil, err
	}
	manager, err := layer(o.Created, []file{{name: Entrypoint[1:], mode: 0o755, data: bin}})
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if img, err = mutate.AppendLayers(img, base, manager); err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", o.Arch
	cfg.Created = v1.Time{Time: o.Created}
	cfg.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", NonRoot, NonRoot),
		Entrypoint: []string{Entrypoint},
		WorkingDir: "/",
		Env:        []string{"HOME=/home/nonroot", "PATH=/"},
		Labels:     o.Labels(),
	}
	return mutate.ConfigFile(img, cfg)
}

// WriteLayout writes the image as an OCI image layout in dir (replacing what was there), with
// ref as its org.opencontainers.image.ref.name.
func WriteLayout(dir string, img v1.Image, ref string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref}))
}

// Push writes the image to the registry ref names (a tag or a digest) with the credentials of
// the user's Docker config ($DOCKER_CONFIG or ~/.docker/config.json, its credential helpers
// included: docker-credential-gcloud for Artifact Registry, ...), and returns the reference by
// digest. A registry on loopback is spoken to over HTTP.
func Push(ctx context.Context, img v1.Image, ref string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", err
	}
	if err := remote.Write(r, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return "", fmt.Errorf("pushing %s: %w", ref, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return "", err
	}
	return r.Context().Digest(digest.String()).String(), nil
}

// WriteTarball writes the image as a tarball that `docker load` and `podman load` read.
func WriteTarball(path string, img v1.Image, ref string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return tarball.WriteToFile(path, tag, img)
}

type file struct {
	name  string
	mode  int64
	dir   bool
	owner int
	data  []byte
}

func layer(mtime time.Time, files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: mtime, Uid: f.owner, Gid: f.owner, Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	raw := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.OCILayer))
}
