package image_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/mastodon-operator/mastodon-operator/internal/image"
	"github.com/mastodon-operator/mastodon-operator/internal/image/imagetest"
	"github.com/mastodon-operator/mastodon-operator/internal/testenv/registry"
)

// staticBinary builds a small static program to stand in for the manager: these tests check the
// image around it (test/e2e runs the real manager's image).
func staticBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "manager")
	cmd := exec.Command("go", "build", "-o", bin, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	return bin
}

func options(t *testing.T) image.Options {
	return image.Options{
		Binary: staticBinary(t), CACertificates: "/etc/ssl/certs/ca-certificates.crt", Arch: runtime.GOARCH,
		Version: "0.1.0", Revision: "abc123", Source: "https://github.com/mastodon-operator/mastodon-operator",
		Created: time.Unix(1700000000, 0).UTC(),
	}
}

// TestImagePushedAndPulledBack builds the image, pushes it to Debian's docker-registry on
// loopback with go-containerregistry's remote package, pulls it back by tag and checks what came
// back.
func TestImagePushedAndPulledBack(t *testing.T) {
	addr, stop, err := registry.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	o := options(t)
	img, err := image.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(addr+"/mastodon-operator:0.1.0", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("pushing to %s: %v", ref, err)
	}
	pulled, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	pushedDigest, _ := img.Digest()
	pulledDigest, err := pulled.Digest()
	if err != nil || pulledDigest != pushedDigest {
		t.Fatalf("pulled digest %s (%v), pushed %s", pulledDigest, err, pushedDigest)
	}
	manifest, err := pulled.MediaType()
	if err != nil || manifest != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("manifest media type %s (%v), want OCI", manifest, err)
	}
	imagetest.CheckOperatorImage(t, pulled, o)
}

// TestImageWrittenAndReproducible writes the OCI layout and the tarball that make image writes,
// reads both back, and builds a second time: the same inputs give the same digest.
func TestImageWrittenAndReproducible(t *testing.T) {
	o := options(t)
	img, err := image.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	const ref = "ghcr.io/mastodon-operator/mastodon-operator:0.1.0"
	if err := image.WriteLayout(filepath.Join(dir, "image"), img, ref); err != nil {
		t.Fatal(err)
	}
	if err := image.WriteTarball(filepath.Join(dir, "image.tar"), img, ref); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	index, err := layout.ImageIndexFromPath(filepath.Join(dir, "image"))
	if err != nil {
		t.Fatal(err)
	}
	fromLayout, err := index.Image(want)
	if err != nil {
		t.Fatalf("the OCI layout does not hold %s: %v", want, err)
	}
	imagetest.CheckOperatorImage(t, fromLayout, o)
	tag, _ := name.NewTag(ref)
	fromTar, err := tarball.ImageFromPath(filepath.Join(dir, "image.tar"), &tag)
	if err != nil {
		t.Fatalf("the tarball has no %s: %v", ref, err)
	}
	imagetest.CheckOperatorImage(t, fromTar, o)
	again, err := image.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := again.Digest(); got != want {
		t.Errorf("a second build gave %s, the first %s: the build is not reproducible", got, want)
	}
}

// TestImagePushedWithTheDockerConfigsCredentials pushes as `make image-push` does (image.Push,
// the credentials of the user's Docker config) to a docker-registry that asks for a password:
// without the config the push is refused, with it the registry serves the image back by the
// digest Push returned.
func TestImagePushedWithTheDockerConfigsCredentials(t *testing.T) {
	addr, stop, err := registry.StartWithAuth("pusher", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	o := options(t)
	img, err := image.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	ref := addr + "/team/mastodon-operator:0.1.0"
	ctx := context.Background()

	t.Setenv("DOCKER_CONFIG", t.TempDir())
	if _, err := image.Push(ctx, img, ref); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a push without credentials: %v, want the registry's 401", err)
	}

	config := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("pusher:s3cret"))
	if err := os.WriteFile(filepath.Join(config, "config.json"), fmt.Appendf(nil, `{"auths": {%q: {"auth": %q}}}`, addr, auth), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", config)
	pushed, err := image.Push(ctx, img, ref)
	if err != nil {
		t.Fatal(err)
	}
	digest, _ := img.Digest()
	if want := addr + "/team/mastodon-operator@" + digest.String(); pushed != want {
		t.Errorf("Push returned %s, want %s", pushed, want)
	}
	byDigest, err := name.ParseReference(pushed)
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Image(byDigest, remote.WithAuth(&authn.Basic{Username: "pusher", Password: "s3cret"}))
	if err != nil {
		t.Fatalf("pulling %s: %v", pushed, err)
	}
	imagetest.CheckOperatorImage(t, pulled, o)
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	tagged, err := remote.Head(tag, remote.WithAuth(&authn.Basic{Username: "pusher", Password: "s3cret"}))
	if err != nil || tagged.Digest != digest {
		t.Errorf("tag %s points at %v (%v), want %s", ref, tagged, err, digest)
	}
}
